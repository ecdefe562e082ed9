import CSystemd
import FerryConfig
import Foundation
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
    import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
#endif

/// Worker processes: spawning, the control channel's messages, the accepting hand-over between
/// generations of a slot, and what happens when one exits.
extension Master {
    // MARK: - Workers

    /// Starts a worker for `slot` (or the standby, `Master.standbySlot`, which holds every slot's
    /// listeners: fd 4 + slot × listeners + index); its pid, or nil when it could not be started
    /// (logged).
    @discardableResult
    func spawnWorker(slot: Int, generation: Int) -> pid_t? {
        do {
            let (masterEnd, childEnd) = try Spawner.socketPair()
            defer { close(childEnd) }
            var descriptors: [(CInt, CInt)] = [(childEnd, 3)]
            let isStandby = slot == Self.standbySlot
            let count = listeners.listeners.count
            for held in isStandby ? Array(0..<workerCount) : [slot] {
                for (index, listener) in listeners.listeners.enumerated() {
                    descriptors.append(
                        (listener.fd(forSlot: held), 4 + CInt((isStandby ? held * count : 0) + index)))
                }
            }
            var environment = childEnvironment()
            if isStandby {
                environment["FERRY_WORKER_STANDBY"] = "1"
                environment["FERRY_WORKER_SLOTS"] = String(workerCount)
            } else {
                environment["FERRY_WORKER_SLOT"] = String(slot)
            }
            environment["FERRY_WORKER_GENERATION"] = String(generation)
            environment["FERRY_LISTENERS_SHARED"] = listeners.listeners.map { $0.shared ? "1" : "0" }.joined(
                separator: ",")
            let pid = try Spawner.spawn(
                executable: executable, arguments: ["worker"], environment: environment, descriptors: descriptors,
                // The title as argv[0] reserves room for it: the worker writes it over its arguments.
                displayName: "ferry: worker g\(generation)/\(isStandby ? "standby" : "s\(slot)")")
            workers[pid] = WorkerRecord(
                pid: pid, generation: generation, slot: slot, phase: .starting, channel: nil,
                lastHeartbeat: .now(), stats: nil, restarts: workerRestarts[slot, default: 0], killDeadline: nil,
                configVersion: configVersion, configuredAt: nil)
            let (source, fileName) = (loaded.source, loaded.fileName)
            let heartbeat = Int(configuration.master.heartbeatInterval.wholeMilliseconds)
            let master = self
            WorkerChannel.attach(fd: masterEnd, pid: pid, master: self).whenComplete { result in
                switch result {
                case .success(let channel):
                    guard master.workers[pid] != nil else {
                        channel.close(promise: nil)
                        return
                    }
                    master.workers[pid]?.channel = channel
                    // The keys as they are now, not at spawn: a ticket key file that changed
                    // meanwhile was broadcast only to workers with a channel.
                    master.send(
                        .configure(
                            source: source, fileName: fileName,
                            ticketKeys: Data(master.ticketKeys).base64EncodedString(),
                            fileTicketKeys: master.ticketKeyFiles.encoded, generation: generation,
                            heartbeatMilliseconds: heartbeat),
                        to: pid)
                    for (name, record) in master.backends where record.phase != .ready && record.phase != .external {
                        master.send(.backend(name: name, available: false), to: pid)
                    }
                    for (backend, server) in master.drainingIndexes {
                        master.send(.serverDraining(backend: backend, server: server, draining: true), to: pid)
                    }
                    for (backend, server) in master.healthChecks?.downServers ?? [] {
                        master.send(.health(backend: backend, server: server, healthy: false), to: pid)
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
        case .ready where record.slot == Self.standbySlot:
            // Booted; serves nothing until it adopts a dead worker's slot.
            if record.phase == .starting { record.phase = .standby }
            standbyRestarts = 0
            if record.configuredAt == nil { record.configuredAt = Date().timeIntervalSince1970 }
            workers[pid] = record
            catchUp(pid: pid)
            logger.info("standby worker ready", metadata: ["pid": "\(pid)", "generation": "\(record.generation)"])
        case .ready:
            if record.phase == .starting { record.phase = .ready }
            workerRestarts[record.slot] = 0
            unservedSlots.removeValue(forKey: record.slot)
            if record.configuredAt == nil { record.configuredAt = Date().timeIntervalSince1970 }
            workers[pid] = record
            catchUp(pid: pid)
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
            let now = NIODeadline.now()
            if let previous = record.stats, let at = record.statsAt {
                record.rates = WorkerRates(
                    previous: previous, current: stats, seconds: Double((now - at).nanoseconds) / 1e9)
            }
            record.stats = stats
            record.statsAt = now
            workers[pid] = record
        case .stoppedAccepting:
            workers[pid] = record
            releaseAccepting(pid: pid, slot: record.slot)
        case .drained:
            workers[pid] = record
        case .reconfigured(let version):
            workers[pid] = record
            reconfigureAnswered(pid: pid, version: version, refusal: nil)
        case .reconfigureFailed(let version, let reason):
            workers[pid] = record
            reconfigureAnswered(pid: pid, version: version, refusal: reason)
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
        if let record = workers[pid], record.slot == Self.standbySlot, record.phase != .draining, !stopping {
            // A standby serves nothing: it goes now, and another one is booted.
            drainWorker(pid: pid)
            if record.generation == generation { spawnStandbyIfWanted() }
            return
        }
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
            } else if record.slot == Self.standbySlot {
                standbyExited(record: record, exit: exit)
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
                if adoptStandby(slot: record.slot, replacing: pid, exit: exit) {
                    releaseAccepting(pid: pid, slot: record.slot)
                    checkStopped()
                    return
                }
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

    // MARK: - The standby worker

    /// A booted standby of the current generation takes over `slot` at once (no process to start,
    /// no configuration to parse, no certificate to load); a new standby is started in its place.
    /// False when there is none ready.
    func adoptStandby(slot: Int, replacing dead: pid_t, exit: Spawner.Exit) -> Bool {
        guard
            let standby = workers.values.first(where: {
                $0.slot == Self.standbySlot && $0.phase == .standby && $0.generation == generation
            })?.pid
        else { return false }
        workers[standby]?.slot = slot
        workers[standby]?.phase = .starting
        workers[standby]?.restarts = workerRestarts[slot, default: 0]
        send(.adopt(slot: slot), to: standby)
        logger.error(
            "worker died; the standby worker takes its slot",
            metadata: ["pid": "\(dead)", "how": "\(exit)", "slot": "\(slot)", "standby": "\(standby)"])
        // The next standby boots a second later: its ~80 ms of start-up CPU would otherwise compete
        // with the adopting worker and the handshakes of every client reconnecting right now.
        let master = self
        let current = generation
        loop.scheduleTask(in: Self.standbyRespawnDelay) {
            master.handle(.respawnWorker(slot: Self.standbySlot, generation: current))
        }
        return true
    }

    static let standbyRespawnDelay = TimeAmount.seconds(1)

    /// Starts the current generation's standby worker, if the configuration wants one.
    func spawnStandbyIfWanted() {
        guard configuration.master.standbyWorker, !stopping else { return }
        spawnWorker(slot: Self.standbySlot, generation: generation)
    }

    /// A standby that died unexpectedly is replaced with the workers' backoff (100 ms doubling up to
    /// 5 s while replacements keep dying before they are ready); one that cannot boot is not.
    func standbyExited(record: WorkerRecord, exit: Spawner.Exit) {
        if exit == .exited(Self.bootFailureExitCode) || record.phase == .failed {
            logger.error("standby worker could not boot", metadata: ["pid": "\(record.pid)"])
            return
        }
        standbyRestarts += 1
        let delay = min(5_000, 100 << min(standbyRestarts - 1, 6))
        logger.error(
            "standby worker died; replacing it",
            metadata: ["pid": "\(record.pid)", "how": "\(exit)", "in_ms": "\(delay)"])
        let master = self
        let generation = record.generation
        loop.scheduleTask(in: .milliseconds(Int64(delay))) {
            master.handle(.respawnWorker(slot: Self.standbySlot, generation: generation))
        }
    }
}
