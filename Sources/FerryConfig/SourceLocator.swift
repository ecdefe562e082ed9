/// Maps key paths such as `route[2].backend` to their line and column in the TOML source.
///
/// TOMLKit reports positions only for syntax errors, so semantic errors need another way to point
/// at the file. This is deliberately not a TOML parser: it recognises table headers (`[a.b]`),
/// array-of-tables headers (`[[route]]`, counted per parent element) and `key =` lines, which is
/// all a position needs. Anything it does not recognise (multi-line strings and arrays, inline
/// tables) is skipped; a path it cannot find falls back to its nearest known parent.
struct SourceLocator: Sendable {
    struct Position: Sendable, Equatable {
        var line: Int
        var column: Int
    }

    private var positions: [String: Position] = [:]

    init(source: String) {
        var arrayCounts: [String: Int] = [:]
        var section = ""
        var inMultilineString = false
        for (index, rawLine) in source.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let line = Substring(rawLine)
            let tripleQuotes = line.occurrences(of: TOMLQuotes.basic) + line.occurrences(of: TOMLQuotes.literal)
            defer { if tripleQuotes % 2 == 1 { inMultilineString.toggle() } }
            if inMultilineString { continue }
            let indent = line.prefix { $0 == " " || $0 == "\t" }.count
            let trimmed = line.dropFirst(indent)
            if trimmed.hasPrefix("[") {
                let isArray = trimmed.hasPrefix("[[")
                let open = isArray ? 2 : 1
                guard let close = trimmed.firstIndex(of: "]") else { continue }
                let name = trimmed[trimmed.index(trimmed.startIndex, offsetBy: open)..<close]
                let parts = name.split(separator: ".").map { Self.unquote($0.trimming(" \t")) }
                section = Self.resolve(parts: parts, isArray: isArray, counts: &arrayCounts)
                record(section, Position(line: lineNumber, column: indent + 1))
            } else if let key = Self.leadingKey(trimmed) {
                let path = section.isEmpty ? key : "\(section).\(key)"
                record(path, Position(line: lineNumber, column: indent + 1))
            }
        }
    }

    /// The position of `keyPath`, or of its nearest recorded parent, or line 1.
    func position(of keyPath: String) -> Position {
        var path = Substring(keyPath)
        while true {
            if let found = positions[String(path)] { return found }
            guard let cut = path.lastIndex(where: { $0 == "." || $0 == "[" }) else { break }
            path = path[..<cut]
        }
        return Position(line: 1, column: 1)
    }

    private mutating func record(_ path: String, _ position: Position) {
        if positions[path] == nil { positions[path] = position }
    }

    private static func resolve(parts: [String], isArray: Bool, counts: inout [String: Int]) -> String {
        var resolved = ""
        for (index, part) in parts.enumerated() {
            resolved = resolved.isEmpty ? part : "\(resolved).\(part)"
            if index == parts.count - 1 && isArray {
                let count = counts[resolved, default: 0] + 1
                counts[resolved] = count
                resolved += "[\(count)]"
            } else if let count = counts[resolved] {
                resolved += "[\(count)]"
            }
        }
        return resolved
    }

    /// `key =` or `"key" =` at the start of a line (dotted keys are kept as written).
    private static func leadingKey(_ line: Substring) -> String? {
        guard let equals = line.firstIndex(of: "=") else { return nil }
        let key = line[..<equals].trimming(" \t")
        guard !key.isEmpty, !key.hasPrefix("#") else { return nil }
        let allowed = key.allSatisfy { $0.isLetter || $0.isNumber || "_-.\"'".contains($0) }
        return allowed ? key.split(separator: ".").map { unquote(String($0)) }.joined(separator: ".") : nil
    }

    private static func unquote(_ text: String) -> String {
        if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
            return String(text.dropFirst().dropLast())
        }
        return text
    }
}

extension StringProtocol {
    fileprivate func occurrences(of needle: String) -> Int {
        var count = 0
        var rest = Substring(self)
        while let range = rest.firstRange(of: needle) {
            count += 1
            rest = rest[range.upperBound...]
        }
        return count
    }

    fileprivate func trimming(_ set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}

private enum TOMLQuotes {
    static let basic = String(repeating: "\"", count: 3)
    static let literal = String(repeating: "'", count: 3)
}
