/// One problem found in a configuration: where it is, which key, and what would be valid.
///
/// Positions are 1-based. Key paths index arrays of tables from 1 in the order they appear in the
/// file (`route[2]` is the second `[[route]]`), which is how an operator counts them.
public struct ConfigurationDiagnostic: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: String, Sendable {
        case error, warning
    }

    public var severity: Severity
    public var file: String
    public var line: Int
    public var column: Int
    public var keyPath: String
    public var message: String

    public init(severity: Severity, file: String, line: Int, column: Int, keyPath: String, message: String) {
        self.severity = severity
        self.file = file
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    public var description: String {
        let key = keyPath.isEmpty ? "" : "\(keyPath): "
        return "\(file):\(line):\(column): \(severity.rawValue): \(key)\(message)"
    }
}

/// A configuration that could not be loaded; holds every error found, not just the first.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [ConfigurationDiagnostic]

    public init(diagnostics: [ConfigurationDiagnostic]) {
        self.diagnostics = diagnostics
    }

    public var description: String {
        diagnostics.map(\.description).joined(separator: "\n")
    }
}

/// A configuration that passed validation, with its lint warnings and the text it came from.
public struct LoadedConfiguration: Sendable {
    public var configuration: FerryConfiguration
    public var warnings: [ConfigurationDiagnostic]
    /// The TOML text that was parsed; workers receive this exact text from the master.
    public var source: String
    /// The path, or `<embedded default>`.
    public var fileName: String

    public init(
        configuration: FerryConfiguration, warnings: [ConfigurationDiagnostic], source: String, fileName: String
    ) {
        self.configuration = configuration
        self.warnings = warnings
        self.source = source
        self.fileName = fileName
    }
}

extension LoadedConfiguration {
    /// A diagnostic about `keyPath` with its position in this configuration's source, for checks
    /// made after loading (certificates, through FerryTLS).
    public func diagnostic(_ severity: ConfigurationDiagnostic.Severity, _ keyPath: String, _ message: String)
        -> ConfigurationDiagnostic
    {
        let position = SourceLocator(source: source).position(of: keyPath)
        return ConfigurationDiagnostic(
            severity: severity, file: fileName, line: position.line, column: position.column, keyPath: keyPath,
            message: message)
    }
}
