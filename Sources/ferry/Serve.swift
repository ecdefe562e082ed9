import ArgumentParser
import FerryConfig
import Foundation

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

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the master: listeners, workers and backends.")
    @OptionGroup var options: ConfigOption

    func run() throws {
        throw NotYetAvailable(command: "serve")
    }
}
