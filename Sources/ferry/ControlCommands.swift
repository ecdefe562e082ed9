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
        abstract: "Reload the configuration; returns when the reload has succeeded (0) or failed (1).",
        discussion: """
            Changes to routes, sites, backends, pool and limit settings, certificates and TLS settings, \
            logging and the master's endpoints are applied inside the running workers: nothing is closed, \
            no process is started. Listener, worker count, user/group, standby_worker, heartbeat_interval \
            or log_file changes start a new generation of workers and drain the old one.
            """)
    @OptionGroup var target: ControlTarget
    @Flag(help: "Start a new generation of workers even if the change could be applied in place (a new binary).")
    var restartWorkers = false

    func run() throws {
        let response = try send(
            "reload", arguments: restartWorkers ? ["restart-workers"] : nil, to: try target.path())
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
