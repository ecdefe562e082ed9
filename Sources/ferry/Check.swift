import ArgumentParser
import FerryConfig
import Foundation

/// `ferry check`: parse, validate and lint, like `nginx -t`. Exit 0 when valid (warnings allowed), 1 otherwise.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Parse, validate and lint a configuration (like nginx -t).")
    @OptionGroup var options: ConfigOption

    func run() throws {
        let loaded: LoadedConfiguration
        do {
            loaded = try options.load()
        } catch {
            for diagnostic in error.diagnostics { printError(diagnostic.description) }
            printError("ferry: configuration \(options.displayName) is invalid (\(error.diagnostics.count) error(s))")
            throw ExitCode(1)
        }
        let problems =
            CertificateChecks.run(loaded.configuration, fileName: loaded.fileName)
            + CertificateChecks.hostCoverage(loaded)
        for warning in loaded.warnings + problems.filter({ $0.severity == .warning }) {
            printError(warning.description)
        }
        let errors = problems.filter { $0.severity == .error }
        guard errors.isEmpty else {
            for error in errors { printError(error.description) }
            printError("ferry: configuration \(options.displayName) is invalid (\(errors.count) error(s))")
            throw ExitCode(1)
        }
        print("ferry: configuration \(loaded.fileName) is valid")
    }
}

func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
