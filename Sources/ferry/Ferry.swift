import ArgumentParser
import FerryTLS

@main
struct Ferry: ParsableCommand {
    /// The release this source tree is; raised with each release (docs/decisions.md).
    static let version = "0.9.0"

    static let configuration = CommandConfiguration(
        commandName: "ferry",
        abstract: "A TLS front door for WebSocket + HTTP services.",
        version: versionText,
        subcommands: [
            Serve.self, Check.self, Status.self, Reload.self, Stop.self, MetricsCommand.self, ServerCommand.self,
            TLSCommand.self, Top.self, Worker.self, Backend.self, ExecAs.self,
        ]
    )

    /// `ferry --version`: Ferry's version, then the OpenSSL it runs with (and was built against when
    /// they differ), as bug reports and packaging scripts need.
    static var versionText: String {
        let runtime = TLSLibrary.runtimeVersion
        let build = TLSLibrary.buildVersion
        return "ferry \(version)\n" + (runtime == build ? runtime : "\(runtime) (built against \(build))")
    }
}
