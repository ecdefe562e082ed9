import FerryConfig
import FerryTLS
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The master's side of the status page: its listeners, the history it samples, the certificates
/// it shows.
extension Master {
    /// `[health]` and `[admin]`: one listener each, or one for both when they name the same address.
    func startAdminServers() {
        var endpoints: [(address: ListenAddress, admin: AdminSettings?, what: String)] = []
        if let admin = configuration.admin { endpoints.append((admin.listen, admin, "admin listener")) }
        if let health = configuration.health, health.listen != configuration.admin?.listen {
            endpoints.append((health.listen, nil, "health endpoint"))
        }
        let master = self
        for endpoint in endpoints {
            AdminServer.start(address: endpoint.address, admin: endpoint.admin, master: self).whenComplete { result in
                switch result {
                case .success(let channel):
                    master.adminServers.append(channel)
                    if endpoint.admin != nil {
                        master.logger.notice(
                            "status page", metadata: ["url": "http://\(endpoint.address)/"])
                    }
                case .failure(let error):
                    master.logger.error(
                        "cannot open the \(endpoint.what)",
                        metadata: ["listen": "\(endpoint.address)", "error": "\(error)"])
                }
            }
        }
        guard configuration.admin != nil else { return }
        // A sample a second, kept for ten minutes: what the page shows when it is opened.
        loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            master.recordHistory()
        }
    }

    func recordHistory() {
        let serving = workers.values.filter { $0.phase == .ready || $0.phase == .draining }
        history.append(
            StatusHistory.sample(
                at: Date().timeIntervalSince1970,
                workers: serving.compactMap { record in record.stats.map { ($0, record.rates) } }))
    }

    /// Every certificate of every TLS listener (re-read only when its file changed).
    func certificateRows() -> [CertificateStatus] {
        var rows: [CertificateStatus] = []
        let now = Date().timeIntervalSince1970
        for listener in configuration.listeners {
            guard let tls = listener.tls else { continue }
            for (index, certificate) in tls.certificates.enumerated() {
                let path = certificate.certificatePath
                let fromACME = index == 0 && tls.acme != nil
                let stamp = FileStamp(path: path)
                if certificateCache[path] == nil || certificateCache[path]?.stamp != stamp {
                    let summary = TLSCertificateInspector.summarize(certificatePath: path).map {
                        CertificateStatus(
                            listener: listener.name, path: path,
                            names: $0.names.isEmpty ? [$0.subject] : $0.names, issuer: $0.issuer,
                            notAfter: $0.notAfter, daysLeft: 0,
                            source: fromACME
                                ? ($0.issuer == $0.subject ? "self-signed (awaiting ACME)" : "acme")
                                : tls.selfSigned && $0.issuer == $0.subject ? "self-signed" : "file")
                    }
                    certificateCache[path] = (stamp, summary)
                }
                guard var row = certificateCache[path]?.summary else { continue }
                row.listener = listener.name
                row.daysLeft = ((row.notAfter - now) / 86400 * 10).rounded() / 10
                row.acme = fromACME ? acmeStatus(listener: listener.name) : nil
                rows.append(row)
            }
        }
        return rows
    }

    /// The document `ferry status`, `/status.json` and the metrics are made of.
    func statusDocument() -> StatusDocument {
        let rows = workers.values.sorted { ($0.generation, $0.slot) < ($1.generation, $1.slot) }.map {
            StatusDocument.Worker(
                pid: $0.pid, generation: $0.generation, slot: $0.slot, state: $0.phase.rawValue, restarts: $0.restarts,
                accepting: acceptingWorker[$0.slot] == $0.pid, stats: $0.stats, configVersion: $0.configVersion,
                configuredAt: $0.configuredAt)
        }
        let backendRows = configuration.supervisedUnits.compactMap { backend -> StatusDocument.Backend? in
            guard let record = backends[backend.name] else { return nil }
            return StatusDocument.Backend(
                name: backend.name, address: backend.address.description, pid: record.pid, state: record.phase.rawValue,
                restarts: record.restarts, supervised: backend.kind.isSupervised)
        }
        let pools = PoolStats.sum(
            workers.values.filter { $0.generation == generation }.flatMap { $0.stats?.pools ?? [] })
        return StatusDocument(
            masterPID: getpid(), uptimeSeconds: Date().timeIntervalSince(started), generation: generation,
            configVersion: configVersion,
            configFile: loaded.fileName, lastReload: lastReload,
            unservedSlots: unservedSlots.isEmpty ? nil : unservedSlots.values.sorted { $0.slot < $1.slot },
            workers: rows.filter { $0.slot != Self.standbySlot },
            standby: configuration.master.standbyWorker ? rows.filter { $0.slot == Self.standbySlot } : nil,
            backends: backendRows,
            servers: serverRows(
                pools: workers.values.filter { $0.generation == generation }.flatMap { $0.stats?.pools ?? [] }),
            health: healthChecks.map { $0.backends.isEmpty ? nil : $0.statusRows } ?? nil,
            pools: pools, certificates: certificateRows(), events: Array(events.withLockedValue { $0 }.suffix(50)),
            latest: history.samples.last)
    }
}
