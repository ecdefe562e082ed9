import ArgumentParser

struct Backend: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a built-in backend: websocket | static.")
    func run() throws { throw NotYetAvailable(command: "backend") }
}
