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

/// Supervised backend processes: start, readiness, restart with backoff, crash-loop give-up.
extension Master {
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
                // Through `ferry exec-as`, which drops to [master].user when running as root and
                // makes the backend die with the master (posix_spawn can do neither), then execs.
                var trampoline = ["exec-as"]
                if getuid() == 0, let user = configuration.master.user {
                    trampoline += ["--user", user]
                    if let group = configuration.master.group { trampoline += ["--group", group] }
                }
                pid = try Spawner.spawn(
                    executable: executable, arguments: trampoline + ["--"] + arguments, environment: environment,
                    descriptors: [], workingDirectory: spec.workingDirectory, output: writeEnd,
                    displayName: Spawner.selfPath)
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
}
