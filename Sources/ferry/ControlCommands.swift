import ArgumentParser
import FerryConfig
import FerrySupervisor
import FerryTLS
import Foundation

/// Where to find a running master: `--socket PATH`, or the control_socket of `--config FILE` (or
/// of the embedded default).
struct ControlTarget: ParsableArguments {
    @Option(name: .long, help: "The master's control socket.") var socket: String?
    @Option(name: .long, help: "Read control_socket from this configuration file.") var config: String?

    func path() throws -> String {
        if let socket { return socket }
        let options = ConfigOption(config: config)
        do {
            return try options.load().configuration.master.controlSocket
        } catch {
            throw ValidationError("cannot read the configuration to find the control socket:\n\(error)")
        }
    }
}

extension ConfigOption {
    init(config: String?) {
        self.init()
        self.config = config
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show workers, backends and pools of a running master.")
    @OptionGroup var target: ControlTarget
    @Flag(help: "Print the raw status document.") var json = false

    func run() throws {
        let response = try send("status", to: try target.path())
        guard let status = response.status else { throw failure(response) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(status), as: UTF8.self))
        } else {
            print(StatusTable.render(status))
        }
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reload the configuration; returns when the reload has succeeded (0) or failed (1).")
    @OptionGroup var target: ControlTarget

    func run() throws {
        let response = try send("reload", to: try target.path())
        print("ferry: reload \(response.ok ? "succeeded" : "failed"): \(response.message ?? "")")
        if !response.ok { throw ExitCode(1) }
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop gracefully: drain, then exit.")
    @OptionGroup var target: ControlTarget

    func run() throws {
        let response = try send("stop", to: try target.path())
        print("ferry: \(response.message ?? (response.ok ? "stopped" : "stop failed"))")
        if !response.ok { throw ExitCode(1) }
    }
}

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "metrics", abstract: "Print Prometheus metrics.")
    @OptionGroup var target: ControlTarget

    func run() throws {
        let response = try send("metrics", to: try target.path())
        guard let metrics = response.metrics else { throw failure(response) }
        print(metrics, terminator: "")
    }
}

/// `ferry server drain|enable BACKEND SERVER`: take a server out of rotation without cutting what
/// it carries, or bring it back.
struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server", abstract: "Drain or enable one server of a backend.",
        subcommands: [Drain.self, Enable.self])

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "No new requests or WebSockets to SERVER; what it has open finishes.")
        @OptionGroup var target: ControlTarget
        @Argument(help: "The backend's name.") var backend: String
        @Argument(help: "The server: its address as in the file, or its position (1, 2, …).") var server: String
        @Option(help: "Close the WebSockets it still has after this many seconds (code 1001).") var deadline: Int?

        func run() throws { try change("server-drain", backend, server, target, deadline: deadline) }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let SERVER take new requests again.")
        @OptionGroup var target: ControlTarget
        @Argument(help: "The backend's name.") var backend: String
        @Argument(help: "The server: its address as in the file, or its position (1, 2, …).") var server: String

        func run() throws { try change("server-enable", backend, server, target) }
    }

    static func change(
        _ command: String, _ backend: String, _ server: String, _ target: ControlTarget, deadline: Int? = nil
    ) throws {
        let arguments = [backend, server] + (deadline.map { [String($0)] } ?? [])
        let response = try send(command, arguments: arguments, to: try target.path())
        guard response.ok else { throw failure(response) }
        print("ferry: \(response.message ?? "done")")
    }
}

private func send(_ command: String, arguments: [String]? = nil, to path: String) throws -> ControlResponse {
    do {
        return try ControlClient.send(command, arguments: arguments, socketPath: path)
    } catch {
        printError("ferry: \(error)")
        throw ExitCode(2)
    }
}

private func failure(_ response: ControlResponse) -> any Error {
    printError("ferry: \(response.message ?? "the master refused the request")")
    return ExitCode(1)
}

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
                "WORKER PID", "GEN", "SLOT", "STATE", "CONNS", "TUNNELS", "LIMIT", "ACCEPT PAUSES", "REQUESTS",
                "TLS ERRORS",
            ],
            (status.workers + (status.standby ?? [])).map { worker in
                let stats = worker.stats
                return [
                    "\(worker.pid)", "\(worker.generation)", worker.slot < 0 ? "-" : "\(worker.slot)", worker.state,
                    "\(stats?.connectionsOpen ?? 0)", "\(stats?.activeTunnels ?? 0)", "\(stats?.connectionLimit ?? 0)",
                    "\(stats?.acceptPauses ?? 0)", "\(stats?.requests ?? 0)",
                    // Probes that connect and close without a byte are in the JSON, not counted as errors.
                    "\(stats?.tlsFailures.filter { $0.key != TLSCounters.closedBeforeClientHello }.values.reduce(0, +) ?? 0)",
                ]
            })
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
