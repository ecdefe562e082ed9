import CSystemd
import FerryACME
public import FerryConfig
import Foundation
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOPosix

#if canImport(Glibc)
    import Glibc
    import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
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
            /// A booted standby worker (slot `Master.standbySlot`), serving nothing yet.
            case standby
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
        /// The configuration version it runs (its `configure`, then each in-place reload it
        /// applied) and when it took it.
        var configVersion = 0
        var configuredAt: Double?
        /// When `stats` arrived, and the rates between it and the heartbeat before (status page).
        var statsAt: NIODeadline?
        var rates: WorkerRates?
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
    /// The same log without the status page's event ring: backends' own output goes here.
    let outputLogger: Logger
    let source: ConfigurationSource
    /// Checked at each spawn, not once: the file on disk may be replaced while the master runs.
    var executable: String { Spawner.executablePath }
    var loaded: LoadedConfiguration
    var generation = 1
    var listeners: ListenerSockets
    var workers: [pid_t: WorkerRecord] = [:]
    var backends: [String: BackendRecord] = [:]
    var workerRestarts: [Int: Int] = [:]
    /// Standby workers that died in a row before they were ready (their backoff).
    var standbyRestarts = 0
    /// The slot number of the standby worker in `workers` and the status document.
    static let standbySlot = -1
    /// Slot → the one worker accepting on that slot's sockets. During a reload the old and the new
    /// generation's workers of a slot hold the same SO_REUSEPORT sockets; two processes accepting
    /// on one socket wake for connections the other took (SwiftNIO's debug builds assert on that
    /// spurious wake-up), so the new worker accepts only once the old one has stopped.
    var acceptingWorker: [Int: pid_t] = [:]
    /// A worker started to replace one that got SIGTERM/SIGINT itself → that worker, drained once
    /// its replacement is ready.
    var replacing: [pid_t: pid_t] = [:]
    var ticketKeys: [UInt8]
    /// The `ticket_keys` files of the current configuration, watched on every tick.
    var ticketKeyFiles: TicketKeyFiles
    var lastReload: StatusDocument.ReloadResult?
    /// Slot → why its worker could not boot; cleared when a worker of the slot is ready.
    var unservedSlots: [Int: StatusDocument.UnservedSlot] = [:]
    /// Worker pid → the reason it gave for not booting (`bootFailed`), until it exits.
    var bootFailures: [pid_t: String] = [:]
    var pendingReloads: [EventLoopPromise<ControlResponse>] = []
    var reloadInProgress: (generation: Int, started: NIODeadline)?
    /// Bumped by every reload that succeeds validation; a worker runs the version it was
    /// configured with, then the ones it applies in place.
    var configVersion = 1
    var inPlaceReload: InPlaceReload?
    /// Why the reload in progress starts a new generation (said when it finishes).
    var newGenerationReason = ""
    var stopping = false
    var stopPromises: [EventLoopPromise<ControlResponse>] = []
    var announcedReady = false
    let started = Date()
    var controlServer: (any Channel)?
    /// `ferry server drain`: per backend, the addresses of its servers taking no new work (kept
    /// across reloads while the server stays in the file).
    var drainedServers: [String: Set<BackendAddress>] = [:]
    /// `[health] listen`: /ready and /live for load balancers.
    /// `[health] listen` and `[admin] listen` (one channel when they share the address).
    var adminServers: [any Channel] = []
    /// A sample a second for the status page (`/history.json`).
    var history = StatusHistory()
    /// The master's recent log lines (info and above), kept by its log handler.
    let events = NIOLockedValueBox<[StatusEvent]>([])
    /// Certificate and key files, watched on every tick (a renewal reaches the workers in place).
    var certificateWatch = CertificateWatch()
    /// Certificates of the listeners, read again only when a file changes.
    var certificateCache: [String: (stamp: FileStamp?, summary: CertificateStatus?)] = [:]
    /// Active health checks (created at boot).
    var healthChecks: HealthChecks?
    /// ACME certificates' orders and renewals (MasterACME), when a listener has `[listen.tls.acme]`.
    var acme: (manager: ACMEManager, task: Task<Void, Never>)?
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
        logger: Logger, ticketKeyFiles: TicketKeyFiles = TicketKeyFiles()
    ) {
        self.ticketKeyFiles = ticketKeyFiles
        self.loaded = loaded
        self.source = source
        self.listeners = listeners
        self.group = group
        self.loop = group.next()
        self.ticketKeys = Self.randomKeys()
        var recording = logger
        recording.handler = EventRecordingLogHandler(inner: logger.handler, events: events)
        self.logger = recording
        self.outputLogger = logger
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
        let ticketKeyFiles: TicketKeyFiles
        do {
            ticketKeyFiles = try TicketKeyFiles(loaded.configuration)
        } catch {
            logger.critical("configuration refused:\n\(error)")
            return 1
        }
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
            loaded: loaded, source: source, listeners: listeners, group: group, logger: logger,
            ticketKeyFiles: ticketKeyFiles)
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
        certificateWatch.reset(configuration)
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
        for backend in configuration.supervisedUnits { startBackend(backend) }
        healthChecks = HealthChecks(master: self)
        healthChecks?.apply(configuration)
        applyACME()
        startAdminServers()
        for slot in 0..<workerCount { spawnWorker(slot: slot, generation: generation) }
        spawnStandbyIfWanted()
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
            refreshTicketKeyFiles()
            checkCertificateFiles()
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
            "generation \(generation), configuration version \(configVersion): \(ready)/\(workerCount) workers, \(backendsReady)/\(supervised) backends ready"
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
        checkInPlaceProgress()
        if let reload = inPlaceReload, now - reload.started > .seconds(30) {
            // A worker that neither applied nor refused in 30 s is hung: replaced like a refusal.
            for pid in reload.waiting {
                reconfigureAnswered(pid: pid, version: reload.version, refusal: "no answer in 30 s")
            }
        }
    }

    // MARK: - Reload

    func reload(promise: EventLoopPromise<ControlResponse>?, restartWorkers: Bool = false) {
        if let promise { pendingReloads.append(promise) }
        guard reloadInProgress == nil, inPlaceReload == nil, !stopping else { return }
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
        let candidateTicketKeys: TicketKeyFiles
        do {
            candidateTicketKeys = try TicketKeyFiles(candidate.configuration)
        } catch {
            return finishReload(ok: false, message: "\(error)")
        }
        let plan = ReloadPlan.between(configuration, candidate.configuration, restartWorkers: restartWorkers)
        if case .newGeneration = plan, candidate.configuration.listeners != configuration.listeners {
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
        ticketKeyFiles = candidateTicketKeys
        applyACME()
        if case .inPlace(let summary) = plan {
            applyBackendChanges(previous: previous)
            healthChecks?.apply(configuration)
            applyInPlace(summary: summary)
            return
        }
        if case .newGeneration(let reason) = plan { newGenerationReason = reason }
        configVersion += 1
        generation += 1
        ticketKeys = Self.randomKeys()
        do { try listeners.ensureSlots(workerCount) } catch { logger.error("\(error)") }
        reloadInProgress = (generation, .now())
        applyBackendChanges(previous: previous)
        for slot in 0..<workerCount { spawnWorker(slot: slot, generation: generation) }
        spawnStandbyIfWanted()
        healthChecks?.apply(configuration)
    }

    /// Backends: restart only those whose configuration changed; stop removed ones.
    func applyBackendChanges(previous: FerryConfiguration) {
        for backend in configuration.supervisedUnits {
            if let old = previous.supervisedUnit(named: backend.name), old == backend { continue }
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
        for name in backends.keys where configuration.supervisedUnit(named: name) == nil { stopBackend(name) }
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
        finishReload(
            ok: true, message: "generation \(reload.generation) serving (new generation: \(newGenerationReason))")
    }

    func finishReload(ok: Bool, message: String) {
        reloadInProgress = nil
        certificateWatch.reset(configuration)
        lastReload = .init(ok: ok, message: message, at: Date().timeIntervalSince1970)
        if ok {
            logger.notice("reload complete", metadata: ["generation": "\(generation)", "how": "\(message)"])
            SystemdNotifier.notify("READY=1\nSTATUS=\(summary()); last reload: \(message)")
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
            reload(promise: promise, restartWorkers: request.arguments?.contains("restart-workers") == true)
        case "stop":
            gracefulStop(promise: promise)
        case "server-drain", "server-enable":
            promise.succeed(setServerDraining(request.arguments ?? [], draining: request.command == "server-drain"))
        case "metrics":
            promise.succeed(ControlResponse(ok: true, metrics: Metrics.prometheus(statusDocument())))
        default:
            promise.succeed(
                ControlResponse(
                    ok: false,
                    message:
                        "unknown command '\(request.command)' (status, reload, stop, metrics, server-drain, server-enable)"
                ))
        }
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
