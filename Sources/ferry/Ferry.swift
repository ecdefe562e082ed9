import ArgumentParser

@main
struct Ferry: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "A TLS front door for WebSocket + HTTP services.",
        subcommands: [
            Serve.self, Check.self, Status.self, Reload.self, Stop.self, MetricsCommand.self, Worker.self, Backend.self,
            ExecAs.self,
        ]
    )
}
