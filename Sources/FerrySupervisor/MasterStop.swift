import CSystemd
import FerryConfig
import Foundation
import Logging
import NIOCore

#if canImport(Glibc)
    import Glibc
    import CoreFoundation  // its copy of the C structs is the one in scope once FerryACME is linked
#endif

/// Stopping: `/ready` turns 503, the drain delay, the workers' drain, the backends, the exit.
extension Master {
    // MARK: - Stop

    func gracefulStop(promise: EventLoopPromise<ControlResponse>? = nil) {
        if let promise { stopPromises.append(promise) }
        guard !stopping else { return }
        // From here /ready answers 503; with a drain_delay, everything keeps serving that long so
        // that load balancers take this host out before it stops accepting.
        stopping = true
        acme?.task.cancel()
        SystemdNotifier.notify("STOPPING=1")
        let delay = configuration.health?.drainDelay ?? .zero
        guard delay > .zero else { return drainForStop() }
        logger.notice(
            "stopping: /ready answers 503; draining after the drain delay", metadata: ["drain_delay": "\(delay)"])
        let master = self
        loop.scheduleTask(in: .milliseconds(delay.wholeMilliseconds)) { master.drainForStop() }
    }

    func drainForStop() {
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
        healthChecks?.stop()
        for server in adminServers { server.close(promise: nil) }
        for promise in stopPromises { promise.succeed(ControlResponse(ok: true, message: "stopped")) }
        stopPromises = []
        controlServer?.close(promise: nil)
        unlink(configuration.master.controlSocket)
        logger.notice("master exiting")
        // Let the stop replies reach their clients before the loop goes away.
        let finished = self.finished
        loop.scheduleTask(in: .milliseconds(50)) { finished.succeed(code) }
    }
}
