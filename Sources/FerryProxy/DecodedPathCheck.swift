/// What a backend may make of a normalized path once it percent-decodes it (once or more), so that
/// an encoding Ferry keeps opaque cannot take the request somewhere its route would not let it go.
///
/// Ferry resolves plain and `%2e` dot segments itself, but keeps reserved escapes such as `%2F`
/// opaque (RFC 3986: they are data, not delimiters). Many backends decode before resolving dot
/// segments (Python's `http.server`, most file servers), so `/a/..%2F..%2Fetc/passwd` reaches them
/// as `/a/../../etc/passwd`, and `/x/..%2Fforbidden` passes a `respond = 403` route on
/// `/forbidden`. This check decodes the path as such a backend would, up to `maxRounds` times
/// (double-encoded `%252F` too), with `\` taken as a separator as Windows-minded servers do, and
/// reports:
/// - a `.` or `..` segment in any decoded form (always refused: nothing legitimate needs one once
///   Ferry has resolved the real ones);
/// - an overlong UTF-8 sequence or NUL in a decoded form (`%C0%AE` is `.` to a lax decoder);
/// - whether a `/` or `\` appeared only through decoding (refused unless the route allows it);
/// - the fully decoded path, so the router can check it would route the same way.
struct DecodedPathCheck: Equatable {
    enum Verdict: Equatable {
        case clean
        case refused(String)
    }

    /// Decoding levels looked at; a path still changing after that many is refused.
    static let maxRounds = 3

    var verdict: Verdict
    /// A `/` or `\` that is not in the path as sent: from an escape (or a literal `\`).
    var hasEncodedSeparator: Bool
    /// The path fully decoded, `\` turned into `/`, empty segments collapsed.
    var decodedPath: [UInt8]

    /// Only paths with a `%` or a `\` can decode to something else; callers skip the rest.
    static func needsCheck(_ path: some StringProtocol) -> Bool {
        path.utf8.contains { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "\\") }
    }

    init(normalizedPath path: some StringProtocol) {
        var current = Array(path.utf8)
        var encodedSeparator = current.contains(UInt8(ascii: "\\"))
        verdict = .clean
        var round = 0
        while true {
            if let problem = Self.problem(in: current, decoded: round > 0) {
                verdict = .refused(problem)
                break
            }
            guard current.contains(UInt8(ascii: "%")) else { break }
            let (decoded, revealedSeparator) = Self.percentDecode(current)
            if decoded == current { break }
            if revealedSeparator { encodedSeparator = true }
            round += 1
            if round > Self.maxRounds {
                verdict = .refused("path still percent-encoded after \(Self.maxRounds) rounds of decoding")
                break
            }
            current = decoded
        }
        hasEncodedSeparator = encodedSeparator
        decodedPath = Self.collapse(current)
    }

    /// A dot segment (with `/` and `\` as separators), an overlong UTF-8 sequence or NUL.
    private static func problem(in bytes: [UInt8], decoded: Bool) -> String? {
        var segmentStart = 0
        for index in 0...bytes.count {
            let atEnd = index == bytes.count
            if atEnd || bytes[index] == UInt8(ascii: "/") || bytes[index] == UInt8(ascii: "\\") {
                let segment = bytes[segmentStart..<index]
                if segment.elementsEqual([UInt8(ascii: ".")])
                    || segment.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")])
                {
                    return decoded
                        ? "path has a dot segment once percent-decoded" : "path has a dot segment behind a '\\'"
                }
                segmentStart = index + 1
            }
            guard !atEnd else { break }
            if bytes[index] == 0 { return "path has NUL once percent-decoded" }
            if isOverlongLead(bytes, at: index) { return "path has an overlong UTF-8 sequence" }
        }
        return nil
    }

    /// C0/C1 leads (2-byte forms of ASCII), E0 80–9F and F0 80–8F (3- and 4-byte forms of shorter
    /// code points): never valid UTF-8, and exactly what lax decoders turn into `.`, `/` or `\`.
    private static func isOverlongLead(_ bytes: [UInt8], at index: Int) -> Bool {
        guard index + 1 < bytes.count else { return false }
        let lead = bytes[index]
        let next = bytes[index + 1]
        switch lead {
        case 0xC0, 0xC1: return next & 0xC0 == 0x80
        case 0xE0: return next >= 0x80 && next <= 0x9F
        case 0xF0: return next >= 0x80 && next <= 0x8F
        default: return false
        }
    }

    /// One round of decoding every well-formed `%XX`; a `%` not followed by two hex digits stays.
    private static func percentDecode(_ bytes: [UInt8]) -> (decoded: [UInt8], revealedSeparator: Bool) {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        var revealed = false
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
                let high = Router.hexValue(bytes[index + 1]), let low = Router.hexValue(bytes[index + 2])
            {
                let value = high << 4 | low
                if value == UInt8(ascii: "/") || value == UInt8(ascii: "\\") { revealed = true }
                output.append(value)
                index += 3
            } else {
                output.append(bytes[index])
                index += 1
            }
        }
        return (output, revealed)
    }

    /// `\` as `/`, runs of separators as one: the path as a decoding backend would route it.
    private static func collapse(_ bytes: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count)
        for byte in bytes {
            let value = byte == UInt8(ascii: "\\") ? UInt8(ascii: "/") : byte
            if value == UInt8(ascii: "/"), output.last == UInt8(ascii: "/") { continue }
            output.append(value)
        }
        return output
    }
}
