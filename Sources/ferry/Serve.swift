import ArgumentParser
import FerryConfig
import FerrySupervisor
import Foundation
import Logging

/// Options shared by commands that read a configuration file.
struct ConfigOption: ParsableArguments {
    @Option(name: .long, help: "Configuration file (TOML). Without it, the embedded default is used.")
    var config: String?

    var displayName: String { config ?? EmbeddedDefault.fileName }

    func load() throws(ConfigurationError) -> LoadedConfiguration {
        if let config {
            return try ConfigurationLoader.load(contentsOf: config)
        }
        return try ConfigurationLoader.embeddedDefault(environment: ProcessInfo.processInfo.environment)
    }
}

/// `ferry serve`: the master. Binds (or adopts from systemd) the listeners, spawns the workers and
/// the backends, and supervises them until TERM/INT (graceful) or QUIT (immediate).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the master: listeners, workers and backends.")
    @OptionGroup var options: ConfigOption

    func run() throws {
        // Before any thread starts, so that every thread inherits the mask (DESIGN.md → signals).
        Master.blockSignals()
        let options = self.options
        let source = ConfigurationSource(
            load: { try options.load() },
            validate: { loaded in
                CertificateChecks.prepareAndCheck(loaded.configuration, fileName: loaded.fileName)
                    .filter { $0.severity == .error }.map(\.description)
            })
        var logger = Logger(label: "ferry.master")
        logger.logLevel = .info
        let code = Master.run(source: source, logger: logger)
        if code != 0 { throw ExitCode(code) }
    }
}
