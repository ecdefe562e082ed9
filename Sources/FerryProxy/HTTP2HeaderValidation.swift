import NIOHPACK

/// RFC 9113 §8.2–8.3 for the header blocks a client sends (a request's HEADERS, trailers), checked
/// by Ferry in one pass over the bytes instead of by swift-nio-http2.
///
/// swift-nio-http2's header block validation checked every block both ways, field by field through
/// `Substring`s and sets: 5 % of a worker's time under h2load, most of it on the responses Ferry
/// writes from backend heads its own parser already checked (docs/decisions.md). With it turned off
/// (`headerBlockValidation = .disabled`; content-length validation stays on), `HTTP2Connection`
/// calls this for every block a client sends, before anything else sees it, and answers a malformed
/// one as the library did: RST_STREAM PROTOCOL_ERROR (§8.1.1). The rules are the library's, and
/// `HTTP2HeaderValidationDifferentialTests` holds the two to the same verdicts:
/// - names: not empty, only lowercase token characters; pseudo-headers only the known ones, each
///   once, before every regular field; none in trailers;
/// - values: no NUL, CR or LF; a pseudo-header's no control character, space or DEL;
/// - no connection-specific field (`connection`, `transfer-encoding`, `proxy-connection`,
///   `keep-alive`, `upgrade`); a request's `te` only `trailers`;
/// - a request has `:method`, `:scheme` and a non-empty `:path`, or is a CONNECT with `:method`
///   and `:authority` only, or an extended CONNECT (RFC 8441: `:protocol`, which Ferry's SETTINGS
///   allow) with `:scheme` and `:path` too.
enum HTTP2HeaderValidation {
    enum Block {
        case request
        case trailers
    }

    private struct Pseudo: OptionSet {
        var rawValue: UInt8
        static let path = Pseudo(rawValue: 1)
        static let method = Pseudo(rawValue: 2)
        static let scheme = Pseudo(rawValue: 4)
        static let authority = Pseudo(rawValue: 8)
        static let status = Pseudo(rawValue: 16)
        static let `protocol` = Pseudo(rawValue: 32)
    }

    /// Nil when the block is well formed, else what is wrong (for the log).
    static func check(_ block: HPACKHeaders, as kind: Block) -> String? {
        var seen = Pseudo()
        var regularSeen = false
        var isConnect = false
        for (name, value, _) in block {
            let verdict = bytes(of: name) { name -> String? in
                guard let first = name.first else { return "an empty field name" }
                if first == UInt8(ascii: ":") {
                    guard kind == .request else { return "a pseudo-header in trailers" }
                    guard !regularSeen else { return "a pseudo-header after a regular field" }
                    guard let pseudo = pseudoHeader(UnsafeBufferPointer(rebasing: name.dropFirst())) else {
                        return "an unknown pseudo-header"
                    }
                    guard !seen.contains(pseudo) else { return "a repeated pseudo-header" }
                    seen.insert(pseudo)
                    return bytes(of: value) { value -> String? in
                        if value.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
                            return "a control character or space in a pseudo-header"
                        }
                        if pseudo == .method { isConnect = equals(value, "CONNECT") }
                        if pseudo == .path && value.isEmpty { return "an empty :path" }
                        return nil
                    }
                }
                regularSeen = true
                for byte in name where !isLowercaseToken(byte) { return "a field name that is not a lowercase token" }
                if isConnectionSpecific(name) { return "a connection-specific field" }
                return bytes(of: value) { value -> String? in
                    if value.contains(where: { $0 == 0 || $0 == 0x0A || $0 == 0x0D }) {
                        return "NUL, CR or LF in a field value"
                    }
                    if kind == .request && equals(name, "te") && !equals(value, "trailers") {
                        return "TE other than trailers"
                    }
                    return nil
                }
            }
            if let verdict { return verdict }
        }
        guard kind == .request else { return nil }
        let allowed: Pseudo
        let mandatory: Pseudo
        if isConnect && seen.contains(.protocol) {
            allowed = [.path, .method, .scheme, .authority, .protocol]
            mandatory = [.path, .method, .scheme]
        } else if isConnect {
            allowed = [.method, .authority]
            mandatory = [.method, .authority]
        } else {
            allowed = [.path, .method, .scheme, .authority]
            mandatory = [.path, .method, .scheme]
        }
        guard allowed.isSuperset(of: seen), seen.isSuperset(of: mandatory) else {
            return "missing or misplaced pseudo-headers"
        }
        return nil
    }

    private static func pseudoHeader(_ name: UnsafeBufferPointer<UInt8>) -> Pseudo? {
        if equals(name, "path") { return .path }
        if equals(name, "method") { return .method }
        if equals(name, "scheme") { return .scheme }
        if equals(name, "authority") { return .authority }
        if equals(name, "status") { return .status }
        if equals(name, "protocol") { return .protocol }
        return nil
    }

    private static func isConnectionSpecific(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
        switch name.count {
        case 7: equals(name, "upgrade")
        case 10: equals(name, "connection") || equals(name, "keep-alive")
        case 16: equals(name, "proxy-connection")
        case 17: equals(name, "transfer-encoding")
        default: false
        }
    }

    /// RFC 9110's tchar without the uppercase letters (RFC 9113 §8.2.1).
    private static func isLowercaseToken(_ byte: UInt8) -> Bool {
        HTTP1HeadParser.isToken(byte) && !(UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
    }

    private static func equals(_ bytes: UnsafeBufferPointer<UInt8>, _ text: StaticString) -> Bool {
        bytes.count == text.utf8CodeUnitCount
            && bytes.elementsEqual(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// A string's UTF-8 without a copy (HPACK's strings are native), else through an array.
    private static func bytes<Result>(of text: String, _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        if let result = text.utf8.withContiguousStorageIfAvailable(body) { return result }
        return Array(text.utf8).withUnsafeBufferPointer(body)
    }
}
