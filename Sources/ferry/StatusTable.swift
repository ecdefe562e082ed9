import FerryConfig
import FerrySupervisor
import FerryTLS
import Foundation

/// The human table of `ferry status`.
enum StatusTable {
    static func render(_ status: StatusDocument) -> String {
        var lines: [String] = []
        let uptime = Int(status.uptimeSeconds)
        lines.append(
            "master pid \(status.masterPID), up \(uptime / 3600)h\(uptime / 60 % 60)m\(uptime % 60)s, generation \(status.generation), config \(status.configFile)"
        )
        if let reload = status.lastReload {
            lines.append(
                "last reload: \(reload.ok ? "ok" : "FAILED") — \(reload.message.split(separator: "\n").first ?? "")")
        }
        for unserved in status.unservedSlots ?? [] {
            lines.append(
                "slot \(unserved.slot): NO WORKER — it could not boot: "
                    + "\(unserved.reason.split(separator: "\n").first ?? ""); fix the configuration and reload")
        }
        lines.append("")
        lines += table(
            [
                "WORKER PID", "GEN", "CONFIG", "SLOT", "STATE", "CONNS", "TUNNELS", "LIMIT", "ACCEPT PAUSES",
                "REQUESTS",
                "TLS ERRORS",
            ],
            (status.workers + (status.standby ?? [])).map { worker in
                let stats = worker.stats
                return [
                    "\(worker.pid)", "\(worker.generation)", worker.configVersion.map { "v\($0)" } ?? "-",
                    worker.slot < 0 ? "-" : "\(worker.slot)", worker.state,
                    "\(stats?.connectionsOpen ?? 0)", "\(stats?.activeTunnels ?? 0)", "\(stats?.connectionLimit ?? 0)",
                    "\(stats?.acceptPauses ?? 0)", "\(stats?.requests ?? 0)",
                    // Probes that connect and close without a byte are in the JSON, not counted as errors.
                    "\(stats?.tlsFailures.filter { $0.key != TLSCounters.closedBeforeClientHello }.values.reduce(0, +) ?? 0)",
                ]
            })
        var protocols = ProtocolStats()
        for worker in status.workers { if let stats = worker.stats { protocols.add(stats.protocols) } }
        lines.append("")
        lines += table(
            ["PROTOCOL", "CONNECTIONS", "REQUESTS", "STREAMS OPEN", "WEBSOCKETS", "REFUSED (BY REASON)"],
            [
                ["http/1.1", "\(protocols.http1Connections)", "\(protocols.http1Requests)", "-", "-", "-"],
                [
                    "h2", "\(protocols.http2Connections)", "\(protocols.http2Requests)",
                    "\(protocols.http2StreamsOpen)", "\(protocols.http2Tunnels)",
                    protocols.http2Refused.isEmpty
                        ? "-"
                        : protocols.http2Refused.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                            .joined(separator: " "),
                ],
            ])
        lines.append("")
        lines += table(
            ["BACKEND", "ADDRESS", "PID", "STATE", "RESTARTS"],
            status.backends.map {
                [$0.name, $0.address, $0.pid.map(String.init) ?? "-", $0.state, "\($0.restarts)"]
            })
        if let servers = status.servers, !servers.isEmpty {
            lines.append("")
            lines += table(
                ["BACKEND", "SERVER", "WEIGHT", "STATE", "ACTIVE", "TUNNELS", "RETRIES"],
                servers.map {
                    [$0.backend, $0.server, "\($0.weight)", $0.state, "\($0.active)", "\($0.tunnels)", "\($0.retries)"]
                })
        }
        if let health = status.health, !health.isEmpty {
            lines.append("")
            lines += table(
                ["BACKEND", "SERVER", "HEALTH", "LAST CHECK", "LATENCY"],
                health.map { row in
                    [
                        row.backend, row.server, row.state, row.lastResult,
                        row.latencyMilliseconds.map { String(format: "%.1f ms", $0) } ?? "-",
                    ]
                })
        }
        if let certificates = status.certificates, !certificates.isEmpty {
            lines.append("")
            lines += table(
                ["CERTIFICATE", "LISTENER", "NAMES", "ISSUER", "NOT AFTER", "DAYS LEFT", "SOURCE"],
                certificates.map { row in
                    [
                        row.path, row.listener, row.names.joined(separator: ","), row.issuer,
                        Self.date(row.notAfter), String(format: "%.1f", row.daysLeft), row.source,
                    ]
                })
            let acme = certificates.compactMap { row in row.acme.map { (row.listener, $0) } }
            if !acme.isEmpty {
                lines.append("")
                lines += table(
                    ["ACME", "STATE", "LAST ATTEMPT", "NEXT ATTEMPT", "ISSUED IN", "LAST ERROR"],
                    acme.map { listener, state in
                        [
                            listener, state.state, state.lastAttempt.map(Self.date) ?? "-",
                            state.nextAttempt.map(Self.date) ?? "-",
                            state.lastIssuanceSeconds.map { String(format: "%.1f s", $0) } ?? "-",
                            state.lastError ?? "-",
                        ]
                    })
            }
        }
        lines.append("")
        lines += table(
            ["POOL", "PROTOCOL", "OPENED", "REUSED", "IDLE", "RETRIES", "CLOSED (BY REASON)"],
            status.pools.map { pool in
                let closed = pool.closed.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(
                    separator: " ")
                return [
                    pool.server.map { "\(pool.backend) \($0)" } ?? pool.backend, pool.protocol, "\(pool.opened)",
                    "\(pool.reused)", "\(pool.idle)", "\(pool.retries)",
                    closed.isEmpty ? "-" : closed,
                ]
            })
        return lines.joined(separator: "\n")
    }

    static func date(_ seconds: Double) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm 'UTC'"
        return formatter.string(from: Date(timeIntervalSince1970: seconds))
    }

    /// Columns as wide as their widest cell, two spaces apart.
    static func table(_ header: [String], _ rows: [[String]]) -> [String] {
        let all = [header] + rows
        let widths = header.indices.map { column in
            all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0
        }
        return all.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index] + 2, withPad: " ", startingAt: 0)
            }.joined()
        }
    }
}
