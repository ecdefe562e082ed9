import ArgumentParser

struct Worker: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Proxy worker (spawned by the master).", shouldDisplay: false)
    func run() throws { throw NotYetAvailable(command: "worker") }
}
