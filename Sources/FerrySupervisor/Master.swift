import CSystemd
public import FerryConfig
import Foundation
public import Logging
import NIOCore
import NIOExtras
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Everything that can happen to the master, turned into one enum handled by one `switch`
/// (gunicorn's arbiter, nginx's master cycle).
enum MasterEvent {
    case signal(Int32)
    case workerMessage(pid: pid_t, WorkerToMaster)
    case workerChannelClosed(pid: pid_t)
    case backendReady(name: String, pid: pid_t)
    case backendReadinessTimedOut(name: String, pid: pid_t)
    case respawnWorker(slot: Int, generation: Int)
    case restartBackend(name: String)
    case tick
    case control(ControlRequest, EventLoopPromise<ControlResponse>)
}

/// How the master loads and validates a configuration (injected: deeper certificate checks live in
/// FerryTLS, which the master does not link against).
public struct ConfigurationSource: Sendable {
    public var load: @Sendable () throws -> LoadedConfiguration
    /// Extra validation (certificates); returns problems, empty when fine.
    public var validate: @Sendable (LoadedConfiguration) -> [String]

    public init(
        load: @escaping @Sendable () throws -> LoadedConfiguration,
        validate: @escaping @Sendable (LoadedConfiguration) -> [String]
    ) {
        self.load = load
        self.validate = validate
    }
}

/// The master process: listeners, worker generations, supervised backends, signals, systemd,
/// control socket. All state lives in this object and is touched only on `loop`.
public final class Master: @unchecked Sendable {
    /// A worker that cannot boot (bad certificate, bad config) exits with this code and is not respawned.
    public static let bootFailureExitCode: Int32 = 3

    struct WorkerRecord {
        enum Phase: String {
            case starting, ready, draining
            /// Could not boot: not respawned until a reload.
            case failed
        }

        var pid: pid_t
        var generation: Int
        var slot: Int
        var phase: Phase
        var channel: (any Channel)?
        var lastHeartbeat: NIODeadline
        var stats: WorkerStats?
        var restarts: Int
        var killDeadline: NIODeadline?
    }

    struct BackendRecord {
        enum Phase: String {
            case starting, ready, backoff, failed, stopped
            case external
        }

        var configuration: BackendConfiguration
        var pid: pid_t?
        var phase: Phase
        var restarts: Int
        var recentRestarts: [NIODeadline]
        var outputChannel: (any Channel)?
        var stopping = false
    }

    let loop: any EventLoop
    let group: any EventLoopGroup
    var logger: Logger
    let source: ConfigurationSource
    /// Checked at each spawn, not once: the file on disk may be replaced while the master runs.
    var executable: String { Spawner.executablePath }
    var loaded: LoadedConfiguration
    var generation = 1
    var listeners: ListenerSockets
    var workers: [pid_t: WorkerRecord] = [:]
    var backends: [String: BackendRecord] = [:]
    var workerRestarts: [Int: Int] = [:]
    /// Slot → the one worker accepting on that slot's sockets. During a reload the old and the new
    /// generation's workers of a slot hold the same SO_REUSEPORT sockets; two processes accepting
    /// on one socket wake for connections the other took (SwiftNIO's debug builds assert on that
    /// spurious wake-up), so the new worker accepts only once the old one has stopped.
    var acceptingWorker: [Int: pid_t] = [:]
    /// A worker started to replace one that got SIGTERM/SIGINT itself → that worker, drained once
    /// its replacement is ready.
    var replacing: [pid_t: pid_t] = [:]
    var ticketKeys: [UInt8]
    var lastReload: StatusDocument.ReloadResult?
    /// Slot → why its worker could not boot; cleared when a worker of the slot is ready.
    var unservedSlots: [Int: StatusDocument.UnservedSlot] = [:]
    /// Worker pid → the reason it gave for not booting (`bootFailed`), until it exits.
    var bootFailures: [pid_t: String] = [:]
    var pendingReloads: [EventLoopPromise<ControlResponse>] = []
    var reloadInProgress: (generation: Int, started: NIODeadline)?
    var stopping = false
    var stopPromises: [EventLoopPromise<ControlResponse>] = []
    var announcedReady = false
    let started = Date()
    var controlServer: (any Channel)?
    var signalSources: [any DispatchSourceSignal] = []
    let finished: EventLoopPromise<Int32>

    var configuration: FerryConfiguration { loaded.configuration }

    var workerCount: Int {
        switch configuration.master.workers {
        case .auto: max(1, System.coreCount)
        case .fixed(let count): count
        }
    }

    init(
        loaded: LoadedConfiguration, source: ConfigurationSource, listeners: ListenerSockets, group: any EventLoopGroup,
        logger: Logger
    ) {
        self.loaded = loaded
        self.source = source
        self.listeners = listeners
        self.group = group
        self.loop = group.next()
        self.logger = logger
        self.ticketKeys = Self.randomKeys()
        self.finished = loop.makePromise(of: Int32.self)
    }

    static func randomKeys() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<80).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Runs the master until it stops; returns the process exit code.
    ///
    /// Signals must already be blocked in every thread (`blockSignals()` before any thread starts).
    public static func run(source: ConfigurationSource, logger: Logger) -> Int32 {
        let loaded: LoadedConfiguration
        do {
            loaded = try source.load()
        } catch {
            logger.critical("configuration refused:\n\(error)")
            return 1
        }
        let problems = source.validate(loaded)
        guard problems.isEmpty else {
            logger.critical("configuration refused:\n\(problems.joined(separator: "\n"))")
            return 1
        }
        for warning in loaded.warnings { logger.warning("\(warning)") }
        let systemd = SystemdSockets.take()
        let slots: Int
        switch loaded.configuration.master.workers {
        case .auto: slots = max(1, System.coreCount)
        case .fixed(let count): slots = count
        }
        let listeners: ListenerSockets
        do {
            listeners = try ListenerSockets.open(loaded.configuration, slots: slots, systemd: systemd)
        } catch {
            logger.critical("\(error)")
            return 1
        }
        if let path = loaded.configuration.master.logFile, !LogFile.reopen(path) {
            logger.critical("cannot open the log file", metadata: ["path": "\(path)"])
            return 1
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let master = Master(
            loaded: loaded, source: source, listeners: listeners, group: group, logger: logger)
        master.loop.execute { master.boot() }
        let code = (try? master.finished.futureResult.wait()) ?? 1
        listeners.closeAll()
        return code
    }

    /// Blocks the signals the master handles, in the calling thread and every thread it starts.
    public static func blockSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for handled in handledSignals {
            // An ignored signal is discarded even when blocked: a master started from a shell or
            // supervisor that ignores SIGHUP/SIGTERM must still receive them.
            signal(handled, SIG_DFL)
            sigaddset(&set, handled)
        }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    static let handledSignals: [Int32] = [SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGCHLD]

    // MARK: - Boot

    func boot() {
        for signal in Self.handledSignals {
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            let master = self
            source.setEventHandler { master.loop.execute { master.handle(.signal(signal)) } }
            source.resume()
            signalSources.append(source)
        }
        setenv("FERRY_MASTER_PID", String(getpid()), 1)
        let master = self
        do {
            try ControlServer.start(master: self).whenComplete { result in
                switch result {
                case .success(let channel):
                    master.controlServer = channel
                case .failure(let error):
                    master.logger.critical(
                        "cannot open the control socket",
                        metadata: ["path": "\(master.configuration.master.controlSocket)", "error": "\(error)"])
                    master.stopping = true
                    for pid in master.workers.keys { kill(pid, SIGKILL) }
                    for record in master.backends.values { if let pid = record.pid { kill(pid, SIGKILL) } }
                    master.finished.succeed(1)
                }
            }
        } catch {
            logger.critical("cannot open the control socket", metadata: ["error": "\(error)"])
            finished.succeed(1)
            return
        }
        for backend in configuration.backends { startBackend(backend) }
        for slot in 0..<workerCount { spawnWorker(slot: slot, generation: generation) }
        loop.scheduleRepeatedTask(initialDelay: .milliseconds(250), delay: .milliseconds(250)) { _ in
            master.handle(.tick)
        }
        if let watchdog = SystemdNotifier.watchdogInterval() {
            let half = TimeAmount.nanoseconds(
                Int64(watchdog.components.seconds) * 500_000_000 + watchdog.components.attoseconds / 2_000_000_000)
            loop.scheduleRepeatedTask(initialDelay: half, delay: half) { _ in SystemdNotifier.notify("WATCHDOG=1") }
        }
        logger.info(
            "master started",
            metadata: [
                "pid": "\(getpid())", "workers": "\(workerCount)", "config": "\(loaded.fileName)",
                "listen":
                    "\(listeners.listeners.map { "\($0.configuration.address)" + ($0.port.map { " (port \($0))" } ?? "") }.joined(separator: ", "))",
            ])
    }

    // MARK: - The one switch

    func handle(_ event: MasterEvent) {
        loop.assertInEventLoop()
        switch event {
        case .signal(let signal):
            handleSignal(signal)
        case .workerMessage(let pid, let message):
            handleWorkerMessage(pid: pid, message)
        case .workerChannelClosed(let pid):
            workers[pid]?.channel = nil
        case .backendReady(let name, let pid):
            guard var record = backends[name], record.pid == pid, record.phase == .starting else { return }
            record.phase = .ready
            backends[name] = record
            logger.info("backend ready", metadata: ["backend": "\(name)", "pid": "\(pid)"])
            broadcast(.backend(name: name, available: true))
            checkReady()
        case .backendReadinessTimedOut(let name, let pid):
            guard let record = backends[name], record.pid == pid, record.phase == .starting else { return }
            logger.error("backend not ready in time; restarting", metadata: ["backend": "\(name)"])
            kill(pid, SIGKILL)
        case .respawnWorker(let slot, let generation):
            guard !stopping, generation == self.generation else { return }
            spawnWorker(slot: slot, generation: generation)
        case .restartBackend(let name):
            guard !stopping, let record = backends[name], record.phase == .backoff else { return }
            startBackend(record.configuration, restarts: record.restarts, recent: record.recentRestarts)
        case .tick:
            tick()
        case .control(let request, let promise):
            handleControl(request, promise)
        }
    }

    func handleSignal(_ signal: Int32) {
        switch signal {
        case SIGCHLD:
            for (pid, exit) in Spawner.reap() { childExited(pid: pid, exit: exit) }
        case SIGHUP:
            reload(promise: nil)
        case SIGTERM, SIGINT:
            gracefulStop()
        case SIGQUIT:
            logger.notice("SIGQUIT: immediate stop")
            // Their exits are expected now: not "worker died; respawning".
            stopping = true
            for pid in workers.keys { kill(pid, SIGKILL) }
            for record in backends.values { if let pid = record.pid { kill(pid, SIGKILL) } }
            finish(code: 0)
        case SIGUSR1:
            reopenLogFile()
        default:
            break
        }
    }

    // MARK: - Workers

    /// Starts a worker for `slot`; its pid, or nil when it could not be started (logged).
    @discardableResult
    func spawnWorker(slot: Int, generation: Int) -> pid_t? {
        do {
            let (masterEnd, childEnd) = try Spawner.socketPair()
            defer { close(childEnd) }
            var descriptors: [(CInt, CInt)] = [(childEnd, 3)]
            for (index, listener) in listeners.listeners.enumerated() {
                descriptors.append((listener.fd(forSlot: slot), 4 + CInt(index)))
            }
            var environment = childEnvironment()
            environment["FERRY_WORKER_SLOT"] = String(slot)
            environment["FERRY_WORKER_GENERATION"] = String(generation)
            environment["FERRY_LISTENERS_SHARED"] = listeners.listeners.map { $0.shared ? "1" : "0" }.joined(
                separator: ",")
            let pid = try Spawner.spawn(
                executable: executable, arguments: ["worker"], environment: environment, descriptors: descriptors,
                // The title as argv[0] reserves room for it: the worker writes it over its arguments.
                displayName: "ferry: worker g\(generation)/s\(slot)")
            workers[pid] = WorkerRecord(
                pid: pid, generation: generation, slot: slot, phase: .starting, channel: nil,
                lastHeartbeat: .now(), stats: nil, restarts: workerRestarts[slot, default: 0], killDeadline: nil)
            let configure = MasterToWorker.configure(
                source: loaded.source, fileName: loaded.fileName, ticketKeys: Data(ticketKeys).base64EncodedString(),
                generation: generation,
                heartbeatMilliseconds: Int(configuration.master.heartbeatInterval.wholeMilliseconds))
            let master = self
            WorkerChannel.attach(fd: masterEnd, pid: pid, master: self).whenComplete { result in
                switch result {
                case .success(let channel):
                    guard master.workers[pid] != nil else {
                        channel.close(promise: nil)
                        return
                    }
                    master.workers[pid]?.channel = channel
                    master.send(configure, to: pid)
                    for (name, record) in master.backends where record.phase != .ready && record.phase != .external {
                        master.send(.backend(name: name, available: false), to: pid)
                    }
                case .failure(let error):
                    master.logger.error(
                        "worker control channel failed", metadata: ["pid": "\(pid)", "error": "\(error)"])
                    kill(pid, SIGKILL)
                }
            }
            return pid
        } catch {
            logger.error("cannot spawn a worker", metadata: ["error": "\(error)"])
            return nil
        }
    }

    func childEnvironment() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for key in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            environment.removeValue(forKey: key)
        }
        environment["FERRY_MASTER_PID"] = String(getpid())
        return environment
    }

    func send(_ message: MasterToWorker, to pid: pid_t) {
        guard let channel = workers[pid]?.channel else { return }
        channel.writeAndFlush(ByteBuffer(string: JSONLine.encode(message)), promise: nil)
    }

    func broadcast(_ message: MasterToWorker) {
        for pid in workers.keys { send(message, to: pid) }
    }

    func handleWorkerMessage(pid: pid_t, _ message: WorkerToMaster) {
        guard var record = workers[pid] else { return }
        record.lastHeartbeat = .now()
        switch message {
        case .ready:
            if record.phase == .starting { record.phase = .ready }
            workerRestarts[record.slot] = 0
            unservedSlots.removeValue(forKey: record.slot)
            workers[pid] = record
            logger.info(
                "worker ready",
                metadata: ["pid": "\(pid)", "generation": "\(record.generation)", "slot": "\(record.slot)"])
            if let replaced = replacing.removeValue(forKey: pid), let old = workers[replaced], old.phase != .draining {
                drainWorker(pid: replaced)
            }
            grantAccepting(slot: record.slot)
            checkReady()
            checkReloadProgress()
        case .heartbeat(let stats):
            record.stats = stats
            workers[pid] = record
        case .stoppedAccepting:
            workers[pid] = record
            releaseAccepting(pid: pid, slot: record.slot)
        case .drained:
            workers[pid] = record
        case .bootFailed(let reason):
            record.phase = .failed
            workers[pid] = record
            bootFailures[pid] = reason
            logger.error("worker cannot boot", metadata: ["pid": "\(pid)", "reason": "\(reason)"])
        case .stopRequested(let signal):
            workers[pid] = record
            // Signalled with the master (a whole unit or process group): the master's own signal
            // arrives at the same moment and drains everyone. Waited for briefly, so that such a
            // stop does not start replacements.
            let master = self
            loop.scheduleTask(in: Self.stopRequestGrace) { master.replaceSignalled(pid: pid, signal: signal) }
        }
    }

    static let stopRequestGrace = TimeAmount.milliseconds(250)

    /// A worker got SIGTERM/SIGINT on its own (not the master): a graceful restart of that worker.
    /// Its replacement starts now; it is drained once the replacement is ready, so its slot always
    /// has a worker accepting. Nothing to do while stopping, or for a worker already on its way out.
    func replaceSignalled(pid: pid_t, signal: Int32) {
        guard !stopping, let record = workers[pid], record.killDeadline == nil,
            record.phase == .ready || record.phase == .starting, record.generation == generation,
            !replacing.values.contains(pid)
        else { return }
        logger.notice(
            "worker got a stop signal; draining it once its replacement is ready",
            metadata: ["pid": "\(pid)", "signal": "\(signal)", "slot": "\(record.slot)"])
        if let replacement = spawnWorker(slot: record.slot, generation: record.generation) {
            replacing[replacement] = pid
        }
    }

    /// Signals that mean the process crashed (as opposed to being killed).
    static let crashSignals: Set<Int32> = [SIGSEGV, SIGILL, SIGABRT, SIGBUS, SIGFPE, SIGTRAP, SIGSYS]

    /// Lets the slot's ready worker of the current generation accept, unless a worker (an older
    /// generation's, still to drain or draining) accepts on the slot's sockets.
    func grantAccepting(slot: Int) {
        guard !stopping, acceptingWorker[slot] == nil else { return }
        guard
            let pid = workers.first(where: {
                $0.value.slot == slot && $0.value.generation == generation && $0.value.phase == .ready
            })?.key
        else { return }
        acceptingWorker[slot] = pid
        send(.accept, to: pid)
    }

    /// The worker stopped accepting (or exited): hand the slot over.
    func releaseAccepting(pid: pid_t, slot: Int) {
        guard acceptingWorker[slot] == pid else { return }
        acceptingWorker[slot] = nil
        grantAccepting(slot: slot)
    }

    /// Sends `drain`; a worker that has not said it stopped accepting within 5 s (hung) loses its
    /// slot anyway, so the new generation is not kept from serving.
    func drainWorker(pid: pid_t) {
        workers[pid]?.phase = .draining
        send(.drain(gracefulMilliseconds: Int(configuration.master.gracefulTimeout.wholeMilliseconds)), to: pid)
        guard let slot = workers[pid]?.slot else { return }
        let master = self
        loop.scheduleTask(in: .seconds(5)) {
            guard master.acceptingWorker[slot] == pid else { return }
            master.logger.warning(
                "draining worker did not stop accepting within 5 s; the new worker accepts anyway",
                metadata: ["pid": "\(pid)", "slot": "\(slot)"])
            master.releaseAccepting(pid: pid, slot: slot)
        }
    }

    func childExited(pid: pid_t, exit: Spawner.Exit) {
        if let record = workers.removeValue(forKey: pid) {
            record.channel?.close(promise: nil)
            // A replacement that died before it was ready leaves the signalled worker serving.
            replacing.removeValue(forKey: pid)
            defer { bootFailures.removeValue(forKey: pid) }
            let expected = record.phase == .draining || stopping || record.generation != generation
            if expected, case .signaled(let signal) = exit, Self.crashSignals.contains(signal) {
                // Not respawned (it was on its way out), but a crash all the same: say so. (Killed
                // by SIGTERM/SIGINT/SIGKILL, say by a process-group kill, is not a crash.)
                logger.error(
                    "worker crashed while draining",
                    metadata: ["pid": "\(pid)", "how": "\(exit)", "generation": "\(record.generation)"])
            } else if expected {
                logger.info("worker exited", metadata: ["pid": "\(pid)", "how": "\(exit)"])
            } else if exit == .exited(Self.bootFailureExitCode) || record.phase == .failed {
                logger.error(
                    "worker could not boot; not respawning until the configuration is fixed and reloaded",
                    metadata: ["pid": "\(pid)", "slot": "\(record.slot)"])
                unservedSlots[record.slot] = .init(
                    slot: record.slot, reason: bootFailures[pid] ?? "worker could not boot (\(exit))",
                    at: Date().timeIntervalSince1970)
            } else {
                let restarts = workerRestarts[record.slot, default: 0] + 1
                workerRestarts[record.slot] = restarts
                // The first death is replaced at once (as nginx does); a slot whose replacements keep
                // dying before they are ready backs off: 100 ms, 200 ms, … up to 5 s.
                let delay = restarts == 1 ? 0 : min(5_000, 100 << min(restarts - 2, 6))
                logger.error(
                    "worker died; respawning",
                    metadata: ["pid": "\(pid)", "how": "\(exit)", "slot": "\(record.slot)", "in_ms": "\(delay)"])
                let master = self
                let slot = record.slot
                let generation = record.generation
                loop.scheduleTask(in: .milliseconds(Int64(delay))) {
                    master.handle(.respawnWorker(slot: slot, generation: generation))
                }
            }
            releaseAccepting(pid: pid, slot: record.slot)
            checkStopped()
            return
        }
        if let name = backends.first(where: { $0.value.pid == pid })?.key {
            backendExited(name: name, exit: exit)
        }
    }

    // MARK: - Backends

    func startBackend(_ backend: BackendConfiguration, restarts: Int = 0, recent: [NIODeadline] = []) {
        guard let arguments = backend.spawnArguments else {
            backends[backend.name] = BackendRecord(
                configuration: backend, pid: nil, phase: .external, restarts: 0, recentRestarts: [])
            return
        }
        do {
            let (readEnd, writeEnd) = try Spawner.pipe()
            defer { close(writeEnd) }
            var environment = childEnvironment()
            let pid: pid_t
            switch backend.kind {
            case .command(let spec):
                for (key, value) in spec.environment { environment[key] = value }
                if getuid() == 0, let user = configuration.master.user {
                    // posix_spawn cannot change the user: go through `ferry exec-as`, which drops, then execs.
                    var trampoline = ["exec-as", "--user", user]
                    if let group = configuration.master.group { trampoline += ["--group", group] }
                    pid = try Spawner.spawn(
                        executable: executable, arguments: trampoline + ["--"] + arguments, environment: environment,
                        descriptors: [], workingDirectory: spec.workingDirectory, output: writeEnd,
                        displayName: Spawner.selfPath)
                } else {
                    pid = try Spawner.spawn(
                        executable: arguments[0], arguments: Array(arguments.dropFirst()), environment: environment,
                        descriptors: [], workingDirectory: spec.workingDirectory, output: writeEnd, searchPath: true)
                }
            default:
                // Built-in backends drop to [master].user/group themselves once they listen.
                if let user = configuration.master.user { environment["FERRY_DROP_USER"] = user }
                if let group = configuration.master.group { environment["FERRY_DROP_GROUP"] = group }
                environment["FERRY_BACKEND_NAME"] = backend.name
                pid = try Spawner.spawn(
                    executable: executable, arguments: arguments, environment: environment, descriptors: [],
                    output: writeEnd, displayName: Spawner.selfPath)
            }
            backends[backend.name] = BackendRecord(
                configuration: backend, pid: pid, phase: .starting, restarts: restarts, recentRestarts: recent)
            let name = backend.name
            let master = self
            BackendOutput.attach(fd: readEnd, name: backend.name, master: self).whenSuccess { channel in
                master.backends[name]?.outputChannel = channel
            }
            logger.info("backend starting", metadata: ["backend": "\(backend.name)", "pid": "\(pid)"])
            broadcast(.backend(name: backend.name, available: false))
            Readiness.await(backend: backend, pid: pid, master: self)
        } catch {
            logger.error("cannot start backend", metadata: ["backend": "\(backend.name)", "error": "\(error)"])
            backends[backend.name] = BackendRecord(
                configuration: backend, pid: nil, phase: .failed, restarts: restarts, recentRestarts: recent)
        }
    }

    func backendExited(name: String, exit: Spawner.Exit) {
        guard var record = backends[name] else { return }
        record.pid = nil
        broadcast(.backend(name: name, available: false))
        if record.stopping || stopping {
            record.phase = .stopped
            backends[name] = record
            logger.info("backend stopped", metadata: ["backend": "\(name)", "how": "\(exit)"])
            checkStopped()
            return
        }
        let policy = record.configuration.restart
        let shouldRestart: Bool
        switch policy.mode {
        case .always: shouldRestart = true
        case .onFailure: shouldRestart = exit != .exited(0)
        case .never: shouldRestart = false
        }
        let now = NIODeadline.now()
        let window = TimeAmount.milliseconds(policy.crashLoopWindow.wholeMilliseconds)
        record.recentRestarts = record.recentRestarts.filter { now - $0 < window }
        guard shouldRestart else {
            record.phase = .stopped
            backends[name] = record
            logger.warning(
                "backend exited; restart policy says no", metadata: ["backend": "\(name)", "how": "\(exit)"])
            return
        }
        guard record.recentRestarts.count < policy.crashLoopLimit else {
            record.phase = .failed
            backends[name] = record
            logger.critical(
                "backend is crash-looping; giving up",
                metadata: [
                    "backend": "\(name)", "restarts": "\(record.recentRestarts.count)",
                    "window": "\(policy.crashLoopWindow)",
                ])
            return
        }
        let attempt = record.recentRestarts.count
        let initial = policy.initialBackoff.wholeMilliseconds
        let delay = min(policy.maxBackoff.wholeMilliseconds, initial << min(Int64(attempt), 20))
        record.recentRestarts.append(now)
        record.restarts += 1
        record.phase = .backoff
        backends[name] = record
        logger.error(
            "backend exited; restarting", metadata: ["backend": "\(name)", "how": "\(exit)", "in_ms": "\(delay)"])
        let master = self
        loop.scheduleTask(in: .milliseconds(delay)) { master.handle(.restartBackend(name: name)) }
    }

    func stopBackend(_ name: String) {
        guard var record = backends[name] else { return }
        record.stopping = true
        backends[name] = record
        if let pid = record.pid { kill(pid, SIGTERM) }
    }

    // MARK: - Readiness, ticks

    func checkReady() {
        guard !announcedReady else { return }
        let workersReady =
            workers.values.filter { $0.generation == generation && $0.phase == .ready }.count >= workerCount
        let backendsReady = backends.values.allSatisfy { [.ready, .external].contains($0.phase) }
        if workersReady && backendsReady {
            announcedReady = true
            SystemdNotifier.notify("READY=1\nSTATUS=\(summary())")
            logger.info("ready", metadata: ["status": "\(summary())"])
        }
    }

    func summary() -> String {
        let ready = workers.values.filter { $0.phase == .ready && $0.generation == generation }.count
        let backendsReady = backends.values.filter { $0.phase == .ready }.count
        let supervised = backends.values.filter { $0.phase != .external }.count
        return
            "generation \(generation): \(ready)/\(workerCount) workers, \(backendsReady)/\(supervised) backends ready"
    }

    func tick() {
        let now = NIODeadline.now()
        let interval = TimeAmount.milliseconds(configuration.master.heartbeatInterval.wholeMilliseconds)
        for (pid, record) in workers {
            if let deadline = record.killDeadline {
                if now > deadline { kill(pid, SIGKILL) }
                continue
            }
            // A ready worker silent for three heartbeats is hung: TERM now, KILL in 5 s.
            if record.phase == .ready && now - record.lastHeartbeat > interval * 3 + .seconds(2) {
                logger.error("worker missed its heartbeats; terminating", metadata: ["pid": "\(pid)"])
                kill(pid, SIGTERM)
                workers[pid]?.killDeadline = now + .seconds(5)
            }
            // A draining worker past its deadline is stopped.
            if record.phase == .draining, now - record.lastHeartbeat > .seconds(3600) {
                kill(pid, SIGKILL)
            }
        }
        if let reload = reloadInProgress, now - reload.started > .seconds(60) {
            finishReload(ok: false, message: "new workers did not become ready within 60 s")
        }
    }

    // MARK: - Reload

    func reload(promise: EventLoopPromise<ControlResponse>?) {
        if let promise { pendingReloads.append(promise) }
        guard reloadInProgress == nil, !stopping else { return }
        SystemdNotifier.notify("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())")
        logger.notice("reloading", metadata: ["config": "\(loaded.fileName)"])
        let candidate: LoadedConfiguration
        do {
            candidate = try source.load()
        } catch {
            return finishReload(ok: false, message: "\(error)")
        }
        let problems = source.validate(candidate)
        guard problems.isEmpty else { return finishReload(ok: false, message: problems.joined(separator: "\n")) }
        if candidate.configuration.listeners != configuration.listeners {
            do {
                let systemd = SystemdSockets.take()
                let reopened = try ListenerSockets.open(
                    candidate.configuration, slots: workerCount, systemd: systemd,
                    held: listeners.listeners.map(\.configuration.address))
                listeners.closeAll()
                listeners = reopened
            } catch {
                return finishReload(ok: false, message: "\(error)")
            }
        }
        for warning in candidate.warnings { logger.warning("\(warning)") }
        let previous = configuration
        loaded = candidate
        generation += 1
        ticketKeys = Self.randomKeys()
        do { try listeners.ensureSlots(workerCount) } catch { logger.error("\(error)") }
        reloadInProgress = (generation, .now())
        // Backends: restart only those whose configuration changed; stop removed ones.
        for backend in configuration.backends {
            if let old = previous.backend(named: backend.name), old == backend { continue }
            if backends[backend.name]?.pid != nil {
                stopBackend(backend.name)
                backends[backend.name]?.configuration = backend
                // Started again by backendExited → restartBackend once the old one is gone.
                backends[backend.name]?.stopping = false
                backends[backend.name]?.recentRestarts = []
            } else {
                startBackend(backend)
            }
        }
        for name in backends.keys where configuration.backend(named: name) == nil { stopBackend(name) }
        for slot in 0..<workerCount { spawnWorker(slot: slot, generation: generation) }
    }

    func checkReloadProgress() {
        guard let reload = reloadInProgress else { return }
        let ready = workers.values.filter { $0.generation == reload.generation && $0.phase == .ready }.count
        guard ready >= workerCount else { return }
        // The new generation serves; the old one drains.
        for (pid, record) in workers where record.generation < reload.generation && record.phase != .draining {
            drainWorker(pid: pid)
        }
        // Fewer workers than before: the surplus slots' sockets would keep getting their share of
        // connections with nobody to accept them. The master closes its copies now; each socket
        // goes away when its old worker closes it at drain (connections still queued on it then
        // are reset by the kernel: a worker-count decrease is the one reload that can lose some).
        listeners.closeSlots(from: workerCount)
        finishReload(ok: true, message: "generation \(reload.generation) serving")
    }

    func finishReload(ok: Bool, message: String) {
        reloadInProgress = nil
        lastReload = .init(ok: ok, message: message, at: Date().timeIntervalSince1970)
        if ok {
            logger.notice("reload complete", metadata: ["generation": "\(generation)"])
            SystemdNotifier.notify("READY=1\nSTATUS=\(summary())")
        } else {
            logger.error("reload failed; the previous configuration keeps serving:\n\(message)")
            let firstLine = message.split(separator: "\n").first.map(String.init) ?? message
            SystemdNotifier.notify("STATUS=reload failed: \(firstLine)")
            SystemdNotifier.notify("READY=1")
        }
        let promises = pendingReloads
        pendingReloads = []
        for promise in promises { promise.succeed(ControlResponse(ok: ok, message: message)) }
    }

    // MARK: - Stop

    func gracefulStop(promise: EventLoopPromise<ControlResponse>? = nil) {
        if let promise { stopPromises.append(promise) }
        guard !stopping else { return }
        stopping = true
        SystemdNotifier.notify("STOPPING=1")
        logger.notice(
            "stopping: draining workers", metadata: ["graceful_timeout": "\(configuration.master.gracefulTimeout)"])
        let graceful = Int(configuration.master.gracefulTimeout.wholeMilliseconds)
        for (pid, _) in workers {
            workers[pid]?.phase = .draining
            send(.drain(gracefulMilliseconds: graceful), to: pid)
        }
        let master = self
        loop.scheduleTask(in: .milliseconds(Int64(graceful) + 5000)) {
            for pid in master.workers.keys { kill(pid, SIGKILL) }
        }
        checkStopped()
    }

    func checkStopped() {
        guard stopping else { return }
        if !workers.isEmpty { return }
        let running = backends.filter { $0.value.pid != nil }
        if !running.isEmpty {
            for (name, record) in running where !record.stopping { stopBackend(name) }
            let master = self
            loop.scheduleTask(in: .seconds(10)) {
                for record in master.backends.values { if let pid = record.pid { kill(pid, SIGKILL) } }
            }
            return
        }
        finish(code: 0)
    }

    func finish(code: Int32) {
        for promise in stopPromises { promise.succeed(ControlResponse(ok: true, message: "stopped")) }
        stopPromises = []
        controlServer?.close(promise: nil)
        unlink(configuration.master.controlSocket)
        logger.notice("master exiting")
        // Let the stop replies reach their clients before the loop goes away.
        let finished = self.finished
        loop.scheduleTask(in: .milliseconds(50)) { finished.succeed(code) }
    }

    /// SIGUSR1 (logrotate): reopen the log file here and in every worker (they write their own
    /// lines, access log included; backends write through the master's pipe).
    func reopenLogFile() {
        guard let path = configuration.master.logFile else {
            logger.notice("SIGUSR1: logging to standard error, nothing to reopen")
            return
        }
        guard LogFile.reopen(path) else {
            logger.error("cannot reopen log file", metadata: ["path": "\(path)"])
            return
        }
        for pid in workers.keys { kill(pid, SIGUSR1) }
        logger.notice("log file reopened", metadata: ["path": "\(path)"])
    }

    // MARK: - Control

    func handleControl(_ request: ControlRequest, _ promise: EventLoopPromise<ControlResponse>) {
        switch request.command {
        case "status":
            promise.succeed(ControlResponse(ok: true, status: statusDocument()))
        case "reload":
            reload(promise: promise)
        case "stop":
            gracefulStop(promise: promise)
        case "metrics":
            promise.succeed(ControlResponse(ok: true, metrics: Metrics.prometheus(statusDocument())))
        default:
            promise.succeed(
                ControlResponse(
                    ok: false, message: "unknown command '\(request.command)' (status, reload, stop, metrics)"))
        }
    }

    func statusDocument() -> StatusDocument {
        let workerRows = workers.values.sorted { ($0.generation, $0.slot) < ($1.generation, $1.slot) }.map {
            StatusDocument.Worker(
                pid: $0.pid, generation: $0.generation, slot: $0.slot, state: $0.phase.rawValue, restarts: $0.restarts,
                accepting: acceptingWorker[$0.slot] == $0.pid, stats: $0.stats)
        }
        let backendRows = configuration.backends.compactMap { backend -> StatusDocument.Backend? in
            guard let record = backends[backend.name] else { return nil }
            return StatusDocument.Backend(
                name: backend.name, address: backend.address.description, pid: record.pid, state: record.phase.rawValue,
                restarts: record.restarts, supervised: backend.kind.isSupervised)
        }
        let pools = PoolStats.sum(
            workers.values.filter { $0.generation == generation }.flatMap { $0.stats?.pools ?? [] })
        return StatusDocument(
            masterPID: getpid(), uptimeSeconds: Date().timeIntervalSince(started), generation: generation,
            configFile: loaded.fileName, lastReload: lastReload,
            unservedSlots: unservedSlots.isEmpty ? nil : unservedSlots.values.sorted { $0.slot < $1.slot },
            workers: workerRows, backends: backendRows,
            pools: pools)
    }
}

/// The log file is standard error: opening it means putting it on fd 2, so every later line (and
/// every child spawned afterwards) writes there.
public enum LogFile {
    public static func reopen(_ path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return false }
        dup2(fd, 2)
        close(fd)
        return true
    }
}
