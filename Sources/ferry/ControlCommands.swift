import ArgumentParser

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
