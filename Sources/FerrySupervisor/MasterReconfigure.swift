import FerryConfig
import Foundation
import Logging
import NIOCore

/// How a reload reaches the workers: applied inside the running ones (routes, sites, backends,
/// pool and limit settings, certificates and TLS settings of the same listeners, access log, log
/// level), or a new generation of workers when something only a new process can take changed.
enum ReloadPlan: Equatable {
    case inPlace(summary: String)
    case newGeneration(reason: String)

    static func between(_ old: FerryConfiguration, _ new: FerryConfiguration, restartWorkers: Bool) -> ReloadPlan {
        if restartWorkers { return .newGeneration(reason: "--restart-workers") }
        let oldListeners = old.listeners.map(Self.withoutTLSContents)
        let newListeners = new.listeners.map(Self.withoutTLSContents)
        if oldListeners != newListeners {
            let changed =
                zip(oldListeners, newListeners).first { $0 != $1 }.map { "listener \($0.0.name) changed" }
                ?? "listeners added or removed"
            return .newGeneration(reason: changed)
        }
        let (before, after) = (old.master, new.master)
        if before.workers != after.workers { return .newGeneration(reason: "worker count changed") }
        if before.user != after.user || before.group != after.group {
            return .newGeneration(reason: "user or group changed")
        }
        if before.standbyWorker != after.standbyWorker { return .newGeneration(reason: "standby_worker changed") }
        if before.heartbeatInterval != after.heartbeatInterval {
            return .newGeneration(reason: "heartbeat_interval changed")
        }
        if before.logFile != after.logFile { return .newGeneration(reason: "log_file changed") }
        var changes: [String] = []
        let changedRoutes = new.routes.filter { !old.routes.contains($0) }.count
        let removedRoutes = max(0, old.routes.count - new.routes.count)
        if changedRoutes + removedRoutes > 0 { changes.append(Self.count(changedRoutes + removedRoutes, "route")) }
        let changedBackends =
            new.backends.filter { backend in old.backends.first { $0.name == backend.name } != backend }.count
            + old.backends.filter { backend in !new.backends.contains { $0.name == backend.name } }.count
        if changedBackends > 0 { changes.append(Self.count(changedBackends, "backend")) }
        if old.listeners.map(\.tls) != new.listeners.map(\.tls) { changes.append("TLS settings") }
        if old.pool != new.pool { changes.append("pool settings") }
        if old.limits != new.limits { changes.append("limits") }
        if old.http2 != new.http2 { changes.append("HTTP/2 settings") }
        if before.logLevel != after.logLevel || before.accessLog != after.accessLog { changes.append("logging") }
        if old.health != new.health || old.admin != new.admin { changes.append("master endpoints") }
        return .inPlace(summary: changes.isEmpty ? "no change" : changes.joined(separator: ", ") + " changed")
    }

    /// A listener as the worker's sockets and pipeline see it: TLS or not, but not its
    /// certificates or TLS settings (those change in place).
    private static func withoutTLSContents(_ listener: ListenerConfiguration) -> ListenerConfiguration {
        var copy = listener
        copy.tls = listener.tls.map { _ in TLSSettings(certificates: []) }
        return copy
    }

    private static func count(_ number: Int, _ noun: String) -> String { "\(number) \(noun)\(number == 1 ? "" : "s")" }
}

/// A reload being applied inside the running workers: who has not answered yet, who refused.
struct InPlaceReload {
    var version: Int
    var started: NIODeadline
    var summary: String
    var waiting: Set<pid_t>
    var refused: [pid_t: String] = [:]
}

extension Master {
    /// The candidate is valid and needs no new workers: every running worker gets it, and the
    /// reload finishes once each has answered (`reconfigureAnswered`).
    func applyInPlace(summary: String) {
        configVersion += 1
        let message = reconfigureMessage()
        var waiting = Set<pid_t>()
        for (pid, record) in workers where record.channel != nil && record.generation == generation {
            guard record.phase == .ready || record.phase == .standby else { continue }
            waiting.insert(pid)
            send(message, to: pid)
        }
        inPlaceReload = InPlaceReload(version: configVersion, started: .now(), summary: summary, waiting: waiting)
        // A slot left without a worker (it could not boot) gets one again, as a reload always did.
        for slot in 0..<workerCount
        where !workers.values.contains(where: {
            $0.slot == slot && $0.generation == generation && ($0.phase == .ready || $0.phase == .starting)
        }) {
            spawnWorker(slot: slot, generation: generation)
        }
        logger.notice(
            "applying the configuration in place",
            metadata: ["version": "\(configVersion)", "changes": "\(summary)", "workers": "\(waiting.count)"])
        checkInPlaceProgress()
    }

    /// A worker that became ready on an older version (it was booting during the reload) gets the
    /// current one.
    func catchUp(pid: pid_t) {
        guard let record = workers[pid], record.configVersion < configVersion else { return }
        send(reconfigureMessage(), to: pid)
    }

    /// The current configuration as a worker applies it in place.
    private func reconfigureMessage() -> MasterToWorker {
        .reconfigure(
            source: loaded.source, fileName: loaded.fileName, fileTicketKeys: ticketKeyFiles.encoded,
            version: configVersion)
    }

    func reconfigureAnswered(pid: pid_t, version: Int, refusal: String?) {
        guard var record = workers[pid] else { return }
        if let refusal {
            logger.error(
                "worker could not apply the configuration; replacing it",
                metadata: ["pid": "\(pid)", "version": "\(version)", "reason": "\(refusal)"])
            if inPlaceReload?.version == version { inPlaceReload?.refused[pid] = refusal }
            replaceWorker(pid: pid)
        } else {
            record.configVersion = version
            record.configuredAt = Date().timeIntervalSince1970
            workers[pid] = record
        }
        if inPlaceReload?.version == version { inPlaceReload?.waiting.remove(pid) }
        checkInPlaceProgress()
    }

    func checkInPlaceProgress() {
        guard let reload = inPlaceReload else { return }
        // A worker that exited meanwhile is not waited for.
        let waiting = reload.waiting.filter { workers[$0] != nil && workers[$0]?.phase != .draining }
        guard waiting.isEmpty else { return }
        inPlaceReload = nil
        if reload.refused.isEmpty {
            finishReload(ok: true, message: "applied in place (version \(reload.version)): \(reload.summary)")
        } else {
            let refusals = reload.refused.map { "worker \($0.key): \($0.value)" }.sorted().joined(separator: "; ")
            finishReload(
                ok: false,
                message:
                    "applied in place (version \(reload.version)) except where refused, replaced by new workers: \(refusals)"
            )
        }
    }

    /// A worker left on an old configuration is replaced: a new worker for its slot (on the
    /// current configuration), then the old one drains; a standby is simply replaced.
    func replaceWorker(pid: pid_t) {
        guard let record = workers[pid], record.phase != .draining else { return }
        if record.slot == Self.standbySlot {
            drainWorker(pid: pid)
            spawnStandbyIfWanted()
            return
        }
        if let replacement = spawnWorker(slot: record.slot, generation: record.generation) {
            replacing[replacement] = pid
        }
    }
}
