import ArgumentParser

/// Options shared by commands that read a configuration file.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Configuration file (TOML). Without it, the embedded default is used.")
    var config: String?
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the master: listeners, workers and backends.")
    @OptionGroup var options: ConfigOption

    func run() throws {
        throw NotYetAvailable(command: "serve")
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Parse, validate and lint a configuration (like nginx -t).")
    @OptionGroup var options: ConfigOption

    func run() throws {
        throw NotYetAvailable(command: "check")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show workers, backends and pools of a running master.")
    func run() throws { throw NotYetAvailable(command: "status") }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reload the configuration and wait for the result.")
    func run() throws { throw NotYetAvailable(command: "reload") }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop gracefully: drain, then exit.")
    func run() throws { throw NotYetAvailable(command: "stop") }
}

struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Proxy worker (spawned by the master).", shouldDisplay: false)
    func run() throws { throw NotYetAvailable(command: "worker") }
}

struct Backend: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a built-in backend: websocket | static.")
    func run() throws { throw NotYetAvailable(command: "backend") }
}

struct NotYetAvailable: Error, CustomStringConvertible {
    var command: String
    var description: String { "ferry \(command): not available in this build yet" }
}
