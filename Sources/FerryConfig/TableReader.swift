internal import TOMLKit

/// Collects diagnostics for one file, placing each with the source locator.
final class DiagnosticSink {
    let fileName: String
    let locator: SourceLocator
    private(set) var diagnostics: [ConfigurationDiagnostic] = []
    /// Every key path a reader asked for, without array indexes (`backend.restart.mode`): the keys
    /// the loader accepts, which a test compares with config.example.toml.
    private(set) var acceptedKeys: Set<String> = []

    func accept(_ keyPath: String) {
        // listen[2].tls.alpn → listen.tls.alpn (indexes only: digits in names stay).
        var normalized = ""
        var inIndex = false
        for character in keyPath {
            if character == "[" {
                inIndex = true
            } else if character == "]" {
                inIndex = false
            } else if !inIndex {
                normalized.append(character)
            }
        }
        acceptedKeys.insert(normalized)
    }

    init(fileName: String, locator: SourceLocator) {
        self.fileName = fileName
        self.locator = locator
    }

    func error(_ keyPath: String, _ message: String) {
        add(.error, keyPath, message)
    }

    func warning(_ keyPath: String, _ message: String) {
        add(.warning, keyPath, message)
    }

    private func add(_ severity: ConfigurationDiagnostic.Severity, _ keyPath: String, _ message: String) {
        let position = locator.position(of: keyPath)
        diagnostics.append(
            ConfigurationDiagnostic(
                severity: severity, file: fileName, line: position.line, column: position.column, keyPath: keyPath,
                message: message))
    }

    var errors: [ConfigurationDiagnostic] { diagnostics.filter { $0.severity == .error } }
    var warnings: [ConfigurationDiagnostic] { diagnostics.filter { $0.severity == .warning } }
}

/// Reads typed values out of one TOML table, reporting wrong types and, on `finish()`, unknown keys.
///
/// Every accessor records the key as known, so `finish()` can name the keys that are valid in
/// this table when the file has one that is not.
final class TableReader {
    let table: TOMLTable
    let path: String
    let sink: DiagnosticSink
    private var known: [String] = []

    init(table: TOMLTable, path: String, sink: DiagnosticSink) {
        self.table = table
        self.path = path
        self.sink = sink
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func has(_ key: String) -> Bool {
        markKnown(key)
        return table.contains(key: key)
    }

    private func markKnown(_ key: String) {
        if !known.contains(key) {
            known.append(key)
            sink.accept(keyPath(key))
        }
    }

    private func value(_ key: String) -> (any TOMLValueConvertible)? {
        markKnown(key)
        return table[key]
    }

    private func typeError(_ key: String, expected: String, got value: any TOMLValueConvertible) {
        sink.error(keyPath(key), "expected \(expected), found \(value.type.description)")
    }

    func string(_ key: String) -> String? {
        guard let value = value(key) else { return nil }
        guard let string = value.string else {
            typeError(key, expected: "a string", got: value)
            return nil
        }
        return string
    }

    func requiredString(_ key: String, example: String) -> String? {
        if let string = string(key) { return string }
        if !table.contains(key: key) { sink.error(path, "missing required key '\(key)' (e.g. \(key) = \(example))") }
        return nil
    }

    func int(_ key: String, range: ClosedRange<Int>) -> Int? {
        guard let value = value(key) else { return nil }
        guard let int = value.int else {
            typeError(key, expected: "an integer", got: value)
            return nil
        }
        guard range.contains(int) else {
            sink.error(keyPath(key), "\(int) is out of range (\(range.lowerBound)…\(range.upperBound))")
            return nil
        }
        return int
    }

    func bool(_ key: String) -> Bool? {
        guard let value = value(key) else { return nil }
        guard let bool = value.bool else {
            typeError(key, expected: "true or false", got: value)
            return nil
        }
        return bool
    }

    func stringArray(_ key: String) -> [String]? {
        guard let value = value(key) else { return nil }
        guard let array = value.array else {
            typeError(key, expected: "an array of strings", got: value)
            return nil
        }
        var strings: [String] = []
        for (index, element) in array.enumerated() {
            guard let string = element.string else {
                sink.error("\(keyPath(key))[\(index + 1)]", "expected a string, found \(element.type.description)")
                return nil
            }
            strings.append(string)
        }
        return strings
    }

    func intArray(_ key: String, range: ClosedRange<Int>) -> [Int]? {
        guard let value = value(key) else { return nil }
        guard let array = value.array else {
            typeError(key, expected: "an array of integers", got: value)
            return nil
        }
        var numbers: [Int] = []
        for (index, element) in array.enumerated() {
            guard let number = element.int, range.contains(number) else {
                sink.error(
                    "\(keyPath(key))[\(index + 1)]", "expected an integer in \(range.lowerBound)...\(range.upperBound)")
                return nil
            }
            numbers.append(number)
        }
        return numbers
    }

    func stringTable(_ key: String) -> [String: String]? {
        guard let value = value(key) else { return nil }
        guard let table = value.table else {
            typeError(key, expected: "a table of strings", got: value)
            return nil
        }
        var result: [String: String] = [:]
        for (name, element) in table {
            guard let string = element.string else {
                sink.error("\(keyPath(key)).\(name)", "expected a string, found \(element.type.description)")
                continue
            }
            result[name] = string
        }
        return result
    }

    func duration(_ key: String, minimum: Duration = .zero) -> Duration? {
        guard let text = string(key) else {
            return nil
        }
        switch ConfigValue.duration(text) {
        case .success(let duration):
            guard duration >= minimum else {
                sink.error(keyPath(key), "'\(text)' is too short (at least \(minimum))")
                return nil
            }
            return duration
        case .failure(let failure):
            sink.error(keyPath(key), failure.reason)
            return nil
        }
    }

    func size(_ key: String, minimum: Int = 1) -> Int? {
        guard let value = value(key) else { return nil }
        let parsed: Result<Int, ConfigValue.ParseFailure>
        if let int = value.int {
            parsed = int >= 0 ? .success(int) : .failure(.init("\(int) is negative"))
        } else if let string = value.string {
            parsed = ConfigValue.size(string)
        } else {
            typeError(key, expected: "a size such as \"16KiB\"", got: value)
            return nil
        }
        switch parsed {
        case .success(let bytes):
            guard bytes >= minimum else {
                sink.error(keyPath(key), "\(bytes) bytes is too small (at least \(minimum))")
                return nil
            }
            return bytes
        case .failure(let failure):
            sink.error(keyPath(key), failure.reason)
            return nil
        }
    }

    func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ type: T.Type) -> T? where T.RawValue == String {
        guard let text = string(key) else { return nil }
        guard let value = T(rawValue: text) else {
            let valid = T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            sink.error(keyPath(key), "'\(text)' is not valid (valid: \(valid))")
            return nil
        }
        return value
    }

    /// A sub-table; a value of another type is an error.
    func subtable(_ key: String) -> TableReader? {
        guard let value = value(key) else { return nil }
        guard let table = value.table else {
            typeError(key, expected: "a table ([\(keyPath(key))])", got: value)
            return nil
        }
        return TableReader(table: table, path: keyPath(key), sink: sink)
    }

    /// An array of tables (`[[key]]`), with 1-based key paths `key[1]`, `key[2]`, ….
    func tableArray(_ key: String) -> [TableReader] {
        guard let value = value(key) else { return [] }
        guard let array = value.array else {
            typeError(key, expected: "an array of tables ([[\(keyPath(key))]])", got: value)
            return []
        }
        var readers: [TableReader] = []
        for (index, element) in array.enumerated() {
            let elementPath = "\(keyPath(key))[\(index + 1)]"
            guard let table = element.table else {
                sink.error(elementPath, "expected a table, found \(element.type.description)")
                continue
            }
            readers.append(TableReader(table: table, path: elementPath, sink: sink))
        }
        return readers
    }

    /// Reports every key that no accessor asked for, naming the valid ones.
    func finish() {
        // TOMLKit's `keys` leaks what it allocates (a C array of copied strings): counted first,
        // the keys are listed only when one is unknown, an error anyway. Reloads parse often.
        let present = known.filter { table.contains(key: $0) }.count
        guard table.count > present else { return }
        for key in table.keys where !known.contains(key) {
            let valid = known.sorted().joined(separator: ", ")
            let here = path.isEmpty ? "at the top level" : "in [\(path)]"
            sink.error(keyPath(key), "unknown key '\(key)' \(here) (valid: \(valid))")
        }
    }
}
