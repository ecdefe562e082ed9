/// A hand-written HTTP/1 head parser: request or response line and field lines, into offsets.
///
/// NIO's decoder (llhttp) makes a `String` per field and was the data plane's CPU hot spot. This
/// parser makes one pass over the bytes and allocates only the fields array. It is at least as
/// strict as llhttp (RFC 9112), and stricter where a lenient reading helps smuggling (the list with
/// reasons is `HeadParserDifferentialTests.deliberateDifferences`): lines end in CRLF only (no bare
/// LF, no bare CR, also before the request line), no obs-fold, no whitespace before a colon, no
/// control characters or DEL in values, exactly one SP between request line parts, a visible-ASCII
/// request-target in one of the four forms, only the methods llhttp knows, only HTTP/1.0 and 1.1,
/// status codes 100-999, no controls in a reason phrase. Framing (Content-Length,
/// Transfer-Encoding) is not interpreted here: that is `RequestRules`' job.
///
/// Every outcome is decided by a prefix of the bytes: a head that is invalid at some offset stays
/// invalid whatever follows, and every proper prefix of a complete head is `.incomplete`. So the
/// caller can parse again from the start whenever more bytes arrive (a caller that gets a head in
/// many small reads pays for rescanning; the head size limit bounds that).
///
/// Depends on the Swift standard library only, so that the fuzzer can compile it standalone.
enum HTTP1HeadParser {
    struct Limits: Sendable, Equatable {
        /// The most bytes a head may have, leading empty lines and the final empty line included.
        var maxHeadBytes: Int
        /// The most field lines a head may have.
        var maxFields: Int

        init(maxHeadBytes: Int = 80 * 1024, maxFields: Int = 100) {
            self.maxHeadBytes = maxHeadBytes
            self.maxFields = maxFields
        }
    }

    enum Outcome: Sendable, Equatable {
        /// No verdict yet: more bytes are needed.
        case incomplete
        /// A head of `headLength` bytes (through its final CRLF); what follows is body or the next message.
        case complete(HTTP1Head, headLength: Int)
        case invalid(HTTP1HeadError)
    }

    /// Parses a request head at the start of `bytes`. Empty lines (CRLF) before the request line
    /// are skipped, as RFC 9112 §2.2 asks and llhttp does; offsets still count from `bytes`' start.
    static func parseRequest(_ bytes: UnsafeRawBufferPointer, limits: Limits = Limits()) -> Outcome {
        var scanner = Scanner(bytes, limits: limits)
        do {
            var head = HTTP1Head()
            try scanner.skipEmptyLines()
            try scanner.requestLine(into: &head)
            try scanner.fieldLines(into: &head)
            return .complete(head, headLength: scanner.index)
        } catch {
            return error.outcome
        }
    }

    /// Parses a response head at the start of `bytes`.
    static func parseResponse(_ bytes: UnsafeRawBufferPointer, limits: Limits = Limits()) -> Outcome {
        var scanner = Scanner(bytes, limits: limits)
        do {
            var head = HTTP1Head()
            try scanner.skipEmptyLines()
            try scanner.statusLine(into: &head)
            try scanner.fieldLines(into: &head)
            return .complete(head, headLength: scanner.index)
        } catch {
            return error.outcome
        }
    }

    /// The index of the first CRLFCRLF at or after `from`, if any: where a head ends. Callers run
    /// the parser once this is there, and resume the search where it stopped, so a head that
    /// arrives in many small reads is scanned once, not once per read.
    static func endOfHead(_ raw: UnsafeRawBufferPointer, from: Int) -> Int? {
        var index = from
        while index + 3 < raw.count {
            if raw[index + 3] == UInt8(ascii: "\n") && raw[index + 2] == UInt8(ascii: "\r")
                && raw[index + 1] == UInt8(ascii: "\n") && raw[index] == UInt8(ascii: "\r")
            {
                return index
            }
            index += 1
        }
        return nil
    }

    /// Methods llhttp accepts (its HTTP method map): an unknown method is refused as NIO does.
    static let knownMethods: [StaticString] = [
        "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "COPY", "LOCK", "MKCOL",
        "MOVE", "PROPFIND", "PROPPATCH", "SEARCH", "UNLOCK", "BIND", "REBIND", "UNBIND", "ACL", "REPORT",
        "MKACTIVITY", "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "PURGE", "MKCALENDAR",
        "LINK", "UNLINK", "SOURCE", "QUERY",
    ]

    /// Whether `method` (a range of `bytes`) is one of `knownMethods`, compared case-sensitively.
    static func isKnownMethod(_ method: Range<Int>, in bytes: UnsafeRawBufferPointer) -> Bool {
        // GET and POST are most of the traffic: decide them without walking the table.
        let first = method.lowerBound
        if method.count == 3 && bytes[first] == UInt8(ascii: "G") && bytes[first + 1] == UInt8(ascii: "E")
            && bytes[first + 2] == UInt8(ascii: "T")
        {
            return true
        }
        for known in knownMethods where known.utf8CodeUnitCount == method.count {
            let candidate = UnsafeRawBufferPointer(start: known.utf8Start, count: known.utf8CodeUnitCount)
            if candidate.elementsEqual(UnsafeRawBufferPointer(rebasing: bytes[method])) { return true }
        }
        return false
    }

    /// Whether `method` (a range of `bytes`) starts one of `knownMethods`.
    static func isKnownMethodPrefix(_ method: Range<Int>, in bytes: UnsafeRawBufferPointer) -> Bool {
        let given = UnsafeRawBufferPointer(rebasing: bytes[method])
        for known in knownMethods where known.utf8CodeUnitCount >= method.count {
            let candidate = UnsafeRawBufferPointer(start: known.utf8Start, count: method.count)
            if candidate.elementsEqual(given) { return true }
        }
        return false
    }

    static func isConnect(_ method: Range<Int>, in bytes: UnsafeRawBufferPointer) -> Bool {
        let connect: StaticString = "CONNECT"
        return UnsafeRawBufferPointer(start: connect.utf8Start, count: connect.utf8CodeUnitCount).elementsEqual(
            UnsafeRawBufferPointer(rebasing: bytes[method]))
    }

    @inline(__always)
    static func isAlpha(_ byte: UInt8) -> Bool {
        (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
    }

    /// tchar (RFC 9110 §5.6.2): ALPHA, DIGIT and ! # $ % & ' * + - . ^ _ ` | ~
    @inline(__always)
    static func isToken(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// field-vchar and obs-text: anything but controls and DEL (SP and HTAB are handled apart).
    @inline(__always)
    static func isFieldVChar(_ byte: UInt8) -> Bool { byte > 0x20 && byte != 0x7F }

    @inline(__always)
    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    /// How a parse stopped early, thrown through the scanner's methods (typed, so nothing is boxed).
    enum Stop: Error {
        case incomplete
        case invalid(HTTP1HeadError)

        var outcome: Outcome {
            switch self {
            case .incomplete: .incomplete
            case .invalid(let error): .invalid(error)
            }
        }
    }

    /// A cursor over the head's bytes, bounded by the head size limit.
    struct Scanner {
        static let sp = UInt8(ascii: " ")
        static let htab = UInt8(ascii: "\t")
        static let cr = UInt8(ascii: "\r")
        static let lf = UInt8(ascii: "\n")

        let bytes: UnsafeRawBufferPointer
        let limits: Limits
        /// Where scanning stops: the end of the bytes or the head size limit, whichever is first.
        let end: Int
        var index = 0

        init(_ bytes: UnsafeRawBufferPointer, limits: Limits) {
            self.bytes = bytes
            self.limits = limits
            self.end = min(bytes.count, max(0, limits.maxHeadBytes))
        }

        /// The stop for running out of bytes: more may come, unless the limit is what ran out.
        func outOfBytes() -> Stop {
            end < bytes.count || end >= limits.maxHeadBytes
                ? .invalid(HTTP1HeadError(code: .headTooLarge, offset: end)) : .incomplete
        }

        func invalid(_ code: HTTP1HeadError.Code, at offset: Int? = nil) -> Stop {
            .invalid(HTTP1HeadError(code: code, offset: offset ?? index))
        }

        @inline(__always)
        func peek() throws(Stop) -> UInt8 {
            guard index < end else { throw outOfBytes() }
            return bytes[index]
        }

        /// Consumes `expected` or stops with `code`.
        @inline(__always)
        mutating func expect(_ expected: UInt8, else code: HTTP1HeadError.Code) throws(Stop) {
            guard try peek() == expected else { throw invalid(code) }
            index += 1
        }

        /// Consumes CRLF; a CR alone or an LF alone is refused as such, anything else with `code`.
        mutating func lineEnd(else code: HTTP1HeadError.Code) throws(Stop) {
            switch try peek() {
            case Self.cr:
                index += 1
                try expect(Self.lf, else: .bareCR)
            case Self.lf: throw invalid(.bareLF)
            default: throw invalid(code)
            }
        }

        /// Skips CRLF pairs before the start line.
        mutating func skipEmptyLines() throws(Stop) {
            while try peek() == Self.cr {
                index += 1
                try expect(Self.lf, else: .bareCR)
            }
            if try peek() == Self.lf { throw invalid(.bareLF) }
        }

        /// Consumes the token characters from here on; stops at the end of the bytes.
        @inline(__always)
        mutating func token() throws(Stop) -> Range<Int> {
            let start = index
            while try HTTP1HeadParser.isToken(peek()) { index += 1 }
            return start..<index
        }

        /// `HTTP/1.0` or `HTTP/1.1`. Other well-formed versions are refused as unsupported.
        mutating func version(into head: inout HTTP1Head) throws(Stop) {
            let prefix: StaticString = "HTTP/"
            for offset in 0..<prefix.utf8CodeUnitCount {
                try expect(prefix.utf8Start[offset], else: .invalidVersion)
            }
            let majorAt = index
            let major = try peek()
            guard HTTP1HeadParser.isDigit(major) else { throw invalid(.invalidVersion) }
            index += 1
            try expect(UInt8(ascii: "."), else: .invalidVersion)
            let minor = try peek()
            guard HTTP1HeadParser.isDigit(minor) else { throw invalid(.invalidVersion) }
            index += 1
            head.versionMajor = major - UInt8(ascii: "0")
            head.versionMinor = minor - UInt8(ascii: "0")
            guard head.versionMajor == 1 && head.versionMinor <= 1 else {
                throw invalid(.unsupportedVersion, at: majorAt)
            }
        }

        /// request-line = method SP request-target SP HTTP-version CRLF, single spaces only.
        mutating func requestLine(into head: inout HTTP1Head) throws(Stop) {
            let methodStart = index
            while index < end && HTTP1HeadParser.isToken(bytes[index]) { index += 1 }
            head.method = methodStart..<index
            if index == end {
                // Like llhttp, refuse a method as soon as it cannot become a known one.
                guard HTTP1HeadParser.isKnownMethodPrefix(head.method, in: bytes) else {
                    throw invalid(.unknownMethod, at: methodStart)
                }
                throw outOfBytes()
            }
            guard !head.method.isEmpty, bytes[index] == Self.sp else { throw invalid(.invalidMethod) }
            guard HTTP1HeadParser.isKnownMethod(head.method, in: bytes) else {
                throw invalid(.unknownMethod, at: methodStart)
            }
            index += 1
            try target(into: &head)
            guard try peek() == Self.sp else { throw invalid(.invalidTarget) }
            index += 1
            if try peek() == Self.sp { throw invalid(.invalidSpacing) }
            try version(into: &head)
            try lineEnd(else: .invalidVersion)
        }

        /// request-target in one of the four forms of RFC 9112 §3.2, visible ASCII only (no controls,
        /// no DEL, no obs-text: a URI is ASCII by RFC 3986). The form check is as loose as llhttp's:
        /// origin-form starts with `/`, absolute-form with a scheme and `://`, asterisk-form is `*`
        /// alone; CONNECT's authority-form is not looked into (the router refuses what it cannot use).
        mutating func target(into head: inout HTTP1Head) throws(Stop) {
            let start = index
            switch try peek() {
            case Self.sp: throw invalid(.invalidSpacing)
            case UInt8(ascii: "/"), UInt8(ascii: "*"): break
            case _ where HTTP1HeadParser.isConnect(head.method, in: bytes): break
            case let byte where HTTP1HeadParser.isAlpha(byte):
                // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ":".
                index += 1
                while case let byte = try peek(),
                    HTTP1HeadParser.isAlpha(byte) || HTTP1HeadParser.isDigit(byte) || byte == UInt8(ascii: "+")
                        || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
                {
                    index += 1
                }
                // Then "://" (an authority follows), as llhttp and `RequestRules.absoluteTarget` require.
                try expect(UInt8(ascii: ":"), else: .invalidTargetForm)
                try expect(UInt8(ascii: "/"), else: .invalidTargetForm)
                try expect(UInt8(ascii: "/"), else: .invalidTargetForm)
            default:
                throw invalid(.invalidTargetForm)
            }
            while case let byte = try peek(), byte > 0x20 && byte < 0x7F { index += 1 }
            head.target = start..<index
            if bytes[start] == UInt8(ascii: "*") && head.target.count > 1 {
                throw invalid(.invalidTargetForm, at: start + 1)
            }
        }

        /// status-line = HTTP-version SP 3DIGIT SP reason-phrase CRLF; like llhttp, the second SP
        /// may be left out when the reason phrase is empty (`HTTP/1.1 200` CRLF).
        mutating func statusLine(into head: inout HTTP1Head) throws(Stop) {
            try version(into: &head)
            try expect(Self.sp, else: .invalidStatus)
            var status = 0
            for position in 0..<3 {
                let digit = try peek()
                guard HTTP1HeadParser.isDigit(digit), position > 0 || digit != UInt8(ascii: "0") else {
                    throw invalid(.invalidStatus)
                }
                status = status * 10 + Int(digit - UInt8(ascii: "0"))
                index += 1
            }
            head.status = status
            guard try peek() == Self.sp else {
                head.reason = index..<index
                return try lineEnd(else: .invalidStatus)
            }
            index += 1
            let reasonStart = index
            while case let byte = try peek(), byte == Self.htab || byte >= Self.sp && byte != 0x7F { index += 1 }
            head.reason = reasonStart..<index
            try lineEnd(else: .invalidReason)
        }

        /// field-line = field-name ":" OWS field-value OWS CRLF, until the empty line.
        mutating func fieldLines(into head: inout HTTP1Head) throws(Stop) {
            head.fields.reserveCapacity(16)
            while true {
                let lineStart = index
                switch try peek() {
                case Self.cr:
                    index += 1
                    try expect(Self.lf, else: .bareCR)
                    return
                case Self.lf:
                    throw invalid(.bareLF)
                case Self.sp, Self.htab:
                    // obs-fold (RFC 9112 §5.2), or whitespace before the first field (§2.2): refused.
                    throw invalid(.obsoleteLineFolding)
                default:
                    break
                }
                let name = try token()
                guard !name.isEmpty else { throw invalid(.invalidFieldName) }
                switch try peek() {
                case UInt8(ascii: ":"): index += 1
                case Self.sp, Self.htab: throw invalid(.whitespaceBeforeColon)
                default: throw invalid(.invalidFieldName)
                }
                while case let byte = try peek(), byte == Self.sp || byte == Self.htab { index += 1 }
                let valueStart = index
                var valueEnd = index
                while true {
                    // The common case, a run of visible characters, without a throwing call per byte.
                    while index < end, HTTP1HeadParser.isFieldVChar(bytes[index]) { index += 1 }
                    valueEnd = index
                    while case let byte = try peek(), byte == Self.sp || byte == Self.htab { index += 1 }
                    if try !HTTP1HeadParser.isFieldVChar(peek()) { break }
                }
                try lineEnd(else: .invalidFieldValue)
                guard head.fields.count < limits.maxFields else { throw invalid(.tooManyFields, at: lineStart) }
                head.fields.append(HTTP1Head.Field(name: name, value: valueStart..<valueEnd, line: lineStart..<index))
            }
        }
    }
}
