import NIOCore
public import NIOHTTP1

/// The per-request decisions that do not need a channel: RFC 9112 framing (request smuggling),
/// header limits, WebSocket upgrade detection, and the hop-by-hop header rules of RFC 9110 §7.6.1.
public enum RequestRules {
    public enum Rejection: Equatable, Sendable {
        case badRequest(String)
        case headersTooLarge(String)
        case bodyTooLarge

        public var status: HTTPResponseStatus {
            switch self {
            case .badRequest: .badRequest
            case .headersTooLarge: .init(statusCode: 431, reasonPhrase: "Request Header Fields Too Large")
            case .bodyTooLarge: .payloadTooLarge
            }
        }
    }

    /// What a request head's headers say, from one pass over them: every check below and the
    /// hop-by-hop rules read this instead of scanning the headers again (each pass over
    /// `HTTPHeaders` costs a retain and a release per stored string, and a browser sends a dozen).
    public struct RequestHeadFacts: Sendable, Equatable {
        var headerCount = 0
        /// Names and values, plus ": " and CRLF for each.
        var headerBytes = 0
        var length: Substring?
        var lengthsDiffer = false
        var encodings = 0
        var lastEncodingIsChunked = false
        var hosts = 0
        var hostElements = 0
        var listing = ConnectionListing()
        /// One of the Upgrade header's elements is `websocket`.
        var upgradeListsWebSocket = false
        /// `Expect: 100-continue` (RFC 9110 §10.1.1): the client waits for `100 Continue` before it
        /// sends the body. Ferry answers it itself and does not send it upstream.
        var expectsContinue = false

        public init(_ head: HTTPRequestHead) {
            for (name, value) in head.headers {
                headerCount += 1
                headerBytes += name.utf8.count + value.utf8.count + 4
                if nameEquals(name, "content-length") {
                    forEachElement(value) { element in
                        if let length, length != element { lengthsDiffer = true }
                        if length == nil { length = element }
                        return true
                    }
                } else if nameEquals(name, "transfer-encoding") {
                    forEachElement(value) { element in
                        encodings += 1
                        lastEncodingIsChunked = nameEquals(element, "chunked")
                        return true
                    }
                } else if nameEquals(name, "host") {
                    hosts += 1
                    forEachElement(value) { _ in
                        hostElements += 1
                        return true
                    }
                } else if nameEquals(name, "connection") {
                    listing.add(value)
                } else if nameEquals(name, "upgrade") {
                    forEachElement(value) { element in
                        if nameEquals(element, "websocket") { upgradeListsWebSocket = true }
                        return true
                    }
                } else if nameEquals(name, "expect") {
                    forEachElement(value) { element in
                        if nameEquals(element, "100-continue") { expectsContinue = true }
                        return true
                    }
                }
            }
            // An HTTP/1.0 client cannot be sent a 1xx response (RFC 9110 §15.2).
            if head.version.major == 1 && head.version.minor == 0 { expectsContinue = false }
        }

        /// The same facts from the client's bytes (no `String` per header): the agreement test
        /// checks both initialisers agree on generated heads.
        init(raw: RawRequestHead) {
            var lengthRange: Range<Int>?
            raw.bytes.withUnsafeReadableBytes { bytes in
                for field in raw.head.fields {
                    headerCount += 1
                    headerBytes += field.name.count + field.value.count + 4
                    if HTTP1Head.name(of: field, equals: "content-length", in: bytes) {
                        HeadBytes.forEachElement(bytes, field.value) { element in
                            if let lengthRange,
                                !UnsafeRawBufferPointer(rebasing: bytes[lengthRange]).elementsEqual(
                                    UnsafeRawBufferPointer(rebasing: bytes[element]))
                            {
                                lengthsDiffer = true
                            }
                            if lengthRange == nil { lengthRange = element }
                            return true
                        }
                    } else if HTTP1Head.name(of: field, equals: "transfer-encoding", in: bytes) {
                        HeadBytes.forEachElement(bytes, field.value) { element in
                            encodings += 1
                            lastEncodingIsChunked = HeadBytes.equals(bytes, element, "chunked")
                            return true
                        }
                    } else if HTTP1Head.name(of: field, equals: "host", in: bytes) {
                        hosts += 1
                        HeadBytes.forEachElement(bytes, field.value) { _ in
                            hostElements += 1
                            return true
                        }
                    } else if HTTP1Head.name(of: field, equals: "connection", in: bytes) {
                        HeadBytes.forEachElement(bytes, field.value) { element in
                            listing.add(element: bytes, element)
                            return true
                        }
                    } else if HTTP1Head.name(of: field, equals: "upgrade", in: bytes) {
                        HeadBytes.forEachElement(bytes, field.value) { element in
                            if HeadBytes.equals(bytes, element, "websocket") { upgradeListsWebSocket = true }
                            return true
                        }
                    } else if HTTP1Head.name(of: field, equals: "expect", in: bytes) {
                        HeadBytes.forEachElement(bytes, field.value) { element in
                            if HeadBytes.equals(bytes, element, "100-continue") { expectsContinue = true }
                            return true
                        }
                    }
                }
            }
            if let lengthRange {
                let text = raw.bytes.getString(
                    at: raw.bytes.readerIndex + lengthRange.lowerBound, length: lengthRange.count)
                length = text.map { Substring($0) }
            }
            if raw.head.versionMajor == 1 && raw.head.versionMinor == 0 { expectsContinue = false }
        }

        /// A body follows the head: a chunked one, or a Content-Length above 0.
        var announcesBody: Bool {
            if encodings > 0 { return true }
            guard let length else { return false }
            return length.utf8.contains { $0 != UInt8(ascii: "0") }
        }

        /// Framing checks of RFC 9112 §6: both Content-Length and Transfer-Encoding, several
        /// differing Content-Length values, a Transfer-Encoding other than a final `chunked`, or an
        /// invalid length all make the message boundary ambiguous, which is what request smuggling
        /// exploits.
        func framingRejection(version: HTTPVersion, maxBodyBytes: Int) -> Rejection? {
            if length != nil && encodings > 0 {
                return .badRequest("both Content-Length and Transfer-Encoding")
            }
            if let length {
                guard !lengthsDiffer else { return .badRequest("differing Content-Length values") }
                guard length.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                    let value = Int(length)
                else {
                    return .badRequest("invalid Content-Length")
                }
                if value > maxBodyBytes { return .bodyTooLarge }
            }
            if encodings > 0 {
                guard encodings == 1, lastEncodingIsChunked else {
                    return .badRequest("Transfer-Encoding other than a single final chunked")
                }
                if version.major == 1 && version.minor == 0 {
                    return .badRequest("Transfer-Encoding in an HTTP/1.0 request")
                }
            }
            if hostElements > 1 { return .badRequest("several Host headers") }
            if version.major == 1 && version.minor == 1 && hosts == 0 {
                return .badRequest("request without Host header")
            }
            return nil
        }

        func limitsRejection(uri: String, maxHeaderBytes: Int, maxHeaderCount: Int) -> Rejection? {
            let bytes = uri.utf8.count + 16 + headerBytes
            if headerCount > maxHeaderCount {
                return .headersTooLarge("\(headerCount) header fields (limit \(maxHeaderCount))")
            }
            if bytes > maxHeaderBytes { return .headersTooLarge("\(bytes) bytes of headers (limit \(maxHeaderBytes))") }
            return nil
        }

        /// A WebSocket upgrade (RFC 6455 §4.1): `Connection: upgrade`, `Upgrade: websocket`, a
        /// `Sec-WebSocket-Key` of 16 bytes in base64 and version 13, on a GET without a body.
        ///
        /// An upgrade to anything else (`h2c`, which `curl --http2` asks for on `http://` URLs) is
        /// ignored, as RFC 9110 §7.8 allows and nginx does: the request is served as HTTP/1.1, and
        /// its Upgrade header, hop-by-hop, never reaches the backend (which also rules out "h2c
        /// smuggling" through Ferry). It used to be refused with 400.
        func upgradeKind(_ request: ExchangeRequest) -> UpgradeKind {
            if let extendedProtocol = request.extendedConnectProtocol {
                // HTTP/2's extended CONNECT (RFC 8441 §4-5): `:protocol` names the protocol, there
                // is no key (the stream itself is the handshake's proof), the version is 13.
                guard extendedProtocol == "websocket" else {
                    return .invalid("extended CONNECT for \(extendedProtocol) is not supported (websocket is)")
                }
                guard request.first(name: "sec-websocket-version") == "13" else {
                    return .invalid("unsupported Sec-WebSocket-Version (13 is required)")
                }
                return .websocket
            }
            guard upgradeListsWebSocket else { return .none }
            guard listing.listsUpgrade else { return .invalid("a WebSocket upgrade needs Connection: upgrade") }
            guard request.method == .GET else { return .invalid("a WebSocket upgrade must be a GET") }
            // After the head come WebSocket frames: a body would be read as frames by one side and
            // as the request's content by the other (a backend answered 101 only once it had the
            // announced Content-Length bytes, which never came: a 60 s wait for the response
            // timeout, then 504).
            guard !announcesBody else { return .invalid("a WebSocket upgrade must not have a body") }
            guard let key = request.first(name: "sec-websocket-key"), key.utf8.count == 24, key.hasSuffix("==")
            else {
                return .invalid("missing or malformed Sec-WebSocket-Key")
            }
            guard request.first(name: "sec-websocket-version") == "13" else {
                return .invalid("unsupported Sec-WebSocket-Version (13 is required)")
            }
            return .websocket
        }
    }

    /// `RequestHeadFacts.framingRejection` in one call.
    public static func checkFraming(_ head: HTTPRequestHead, maxBodyBytes: Int) -> Rejection? {
        RequestHeadFacts(head).framingRejection(version: head.version, maxBodyBytes: maxBodyBytes)
    }

    /// `RequestHeadFacts.limitsRejection` in one call.
    public static func checkLimits(_ head: HTTPRequestHead, maxHeaderBytes: Int, maxHeaderCount: Int) -> Rejection? {
        RequestHeadFacts(head).limitsRejection(
            uri: head.uri, maxHeaderBytes: maxHeaderBytes, maxHeaderCount: maxHeaderCount)
    }

    /// A request target in absolute-form (`GET http://example.com/a?b HTTP/1.1`), split into its
    /// authority and the origin-form target Ferry routes on and sends upstream.
    public struct AbsoluteTarget: Equatable, Sendable {
        public var authority: String
        public var originForm: String
    }

    /// Reads an absolute-form request target, which RFC 9112 §3.2.2 says a server MUST accept
    /// (clients send it to proxies, and some send it everywhere). Nil when the target is not an
    /// `http` or `https` URI with a non-empty authority without userinfo: origin-form targets take
    /// this path after one byte, and anything else is left to the router, which refuses what does
    /// not start with `/` with 400.
    public static func absoluteTarget(_ uri: String) -> AbsoluteTarget? {
        guard let first = uri.utf8.first, first != UInt8(ascii: "/"), first != UInt8(ascii: "*") else { return nil }
        guard let colon = uri.utf8.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let scheme = uri[..<colon]
        guard caseInsensitiveEquals(scheme, "http") || caseInsensitiveEquals(scheme, "https") else { return nil }
        let afterColon = uri[colon...].dropFirst()
        guard afterColon.hasPrefix("//") else { return nil }
        let rest = afterColon.dropFirst(2)
        let authorityEnd =
            rest.utf8.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
            ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard !authority.isEmpty,
            authority.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "@") })
        else { return nil }
        let target = rest[authorityEnd...]
        let originForm = target.hasPrefix("/") ? String(target) : "/" + target
        return AbsoluteTarget(authority: String(authority), originForm: originForm)
    }

    public enum UpgradeKind: Equatable, Sendable {
        case none
        case websocket
        /// Asked for a WebSocket upgrade, but not a valid one (no Connection: upgrade, not a GET,
        /// missing key or version).
        case invalid(String)
    }

    /// `RequestHeadFacts.upgradeKind` in one call.
    public static func upgradeKind(_ head: HTTPRequestHead) -> UpgradeKind {
        let request = ExchangeRequest(head)
        return request.facts.upgradeKind(request)
    }

    /// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1), plus the ones the
    /// `Connection` header names.
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authenticate",
        "proxy-authorization",
    ]

    /// The request head Ferry sends upstream, as a head (WebSocket upgrades, which go through NIO's
    /// request encoder on a fresh connection). See `forEachUpstreamHeader` for what it holds.
    public static func upstreamHead(
        _ head: HTTPRequestHead, uri: String, clientAddress: String?, tls: Bool, upgrade: Bool
    ) -> HTTPRequestHead {
        var kept: [(String, String)] = []
        kept.reserveCapacity(head.headers.count + 5)
        forEachUpstreamHeader(
            head, listing: ConnectionListing(head.headers), clientAddress: clientAddress, tls: tls, upgrade: upgrade,
            { kept.append(($0, $1)) }, forwarded: { kept.append(("Forwarded", $0.text)) })
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: uri, headers: HTTPHeaders(kept))
    }

    /// How the body of a request sent upstream is framed on the wire.
    enum UpstreamBodyFraming: Equatable {
        /// No body (or a Content-Length one: its bytes go as they are).
        case asIs
        case chunked
    }

    /// Writes the request Ferry sends over a pooled connection, request line to blank line, into
    /// `buffer` (no `HTTPRequestHead`, no headers array: this runs once per proxied request).
    ///
    /// Ferry writes the framing header itself from what `facts` validated (as `ResponseFramer`
    /// does for responses), never the client's own lines: a `Connection` header listing them would
    /// otherwise drop them as hop-by-hop and leave the body unframed. That is the one Content-Length
    /// value, or `Transfer-Encoding: chunked` (the body is then re-chunked by the caller); a POST,
    /// PUT or PATCH with neither gets `Content-Length: 0`, so that no backend waits for a body.
    static func writeUpstreamRequest(
        _ head: HTTPRequestHead, facts: RequestHeadFacts, uri: String, clientAddress: String?, tls: Bool,
        into buffer: inout ByteBuffer
    ) -> UpstreamBodyFraming {
        buffer.writeString(head.method.rawValue)
        buffer.writeStaticString(" ")
        buffer.writeString(uri)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        forEachUpstreamHeader(
            head, listing: facts.listing, clientAddress: clientAddress, tls: tls, upgrade: false,
            { name, value in
                guard !nameEquals(name, "content-length") && !nameEquals(name, "transfer-encoding") else { return }
                // Answered by Ferry (`Exchange.startHTTP`); the body follows the head without waiting.
                if facts.expectsContinue && nameEquals(name, "expect") { return }
                ResponseFramer.writeHeader(name, value, into: &buffer)
            },
            forwarded: { value in
                buffer.writeStaticString("Forwarded: ")
                value.forEachPiece { buffer.writeString($0) }
                buffer.writeStaticString("\r\n")
            })
        return writeUpstreamFraming(method: head.method, facts: facts, into: &buffer)
    }

    /// The value of the `Forwarded` header Ferry sends upstream (RFC 7239), as pieces, so that the
    /// byte writer copies them without building a string.
    struct ForwardedValue {
        let clientAddress: String?
        let proto: String
        let host: String?

        func forEachPiece(_ piece: (String) -> Void) {
            if let clientAddress {
                let v6 = clientAddress.utf8.contains(UInt8(ascii: ":"))
                piece(v6 ? "for=\"[" : "for=")
                piece(clientAddress)
                piece(v6 ? "]\";" : ";")
            }
            piece("proto=")
            piece(proto)
            if let host, !host.utf8.contains(UInt8(ascii: "\"")) {
                piece(";host=\"")
                piece(host)
                piece("\"")
            }
        }

        /// Built in place in one allocation (string interpolation and `+` reallocate at each step).
        var text: String {
            var text = ""
            text.reserveCapacity(32 + (clientAddress?.utf8.count ?? 0) + (host?.utf8.count ?? 0))
            forEachPiece { text.append($0) }
            return text
        }
    }

    /// The headers of the request Ferry sends upstream, in order: the client's, without hop-by-hop
    /// ones and without its X-Forwarded-Proto/-Host and Forwarded; `Transfer-Encoding: chunked` and
    /// Host are kept; then X-Forwarded-For (appended to the client's), X-Forwarded-Proto,
    /// X-Forwarded-Host, Forwarded, and for an upgrade `Connection: Upgrade`, `Upgrade: websocket`.
    ///
    /// Runs once per request, so without per-header allocations: names are compared in place
    /// (`nameEquals`).
    static func forEachUpstreamHeader(
        _ head: HTTPRequestHead, listing: ConnectionListing, clientAddress: String?, tls: Bool, upgrade: Bool,
        _ body: (String, String) -> Void, forwarded: (ForwardedValue) -> Void
    ) {
        var host: String?
        var forwardedFor: String?
        for (name, value) in head.headers {
            if isHopByHop(name, in: head.headers, listing: listing) { continue }
            if nameEquals(name, "x-forwarded-proto") || nameEquals(name, "x-forwarded-host")
                || nameEquals(name, "forwarded")
            {
                continue
            }
            if nameEquals(name, "x-forwarded-for") {
                forwardedFor = forwardedFor.map { "\($0), \(value)" } ?? value
                continue
            }
            if host == nil && nameEquals(name, "host") { host = value }
            body(name, value)
        }
        let proto = tls ? "https" : "http"
        if let clientAddress {
            body("X-Forwarded-For", forwardedFor.map { "\($0), \(clientAddress)" } ?? clientAddress)
        } else if let forwardedFor {
            body("X-Forwarded-For", forwardedFor)
        }
        body("X-Forwarded-Proto", proto)
        if let host { body("X-Forwarded-Host", host) }
        forwarded(ForwardedValue(clientAddress: clientAddress, proto: proto, host: host))
        if upgrade {
            body("Connection", "Upgrade")
            body("Upgrade", "websocket")
        }
    }

    /// Writes the backend's response headers for the client: the hop-by-hop ones of the backend's
    /// hop and its Transfer-Encoding left out (Ferry frames the body itself, see `ResponseFramer`),
    /// its Content-Length too when the status has no body or `dropContentLength` (Ferry then writes
    /// its own). Ferry's Connection header follows in `ResponseFramer.finishHead`.
    static func writeDownstreamHeaders(
        _ headers: HTTPHeaders, listing: ConnectionListing, framer: ResponseFramer, dropContentLength: Bool = false,
        into buffer: inout ByteBuffer
    ) {
        for (name, value) in headers {
            if isHopByHop(name, in: headers, listing: listing) || nameEquals(name, "transfer-encoding")
                || framer.dropsFramingHeader(name) || (dropContentLength && nameEquals(name, "content-length"))
            {
                continue
            }
            ResponseFramer.writeHeader(name, value, into: &buffer)
        }
    }

    /// Whether `name` is hop-by-hop: one of RFC 9110's, or listed in a `Connection` header.
    static func isHopByHop(_ name: String, in headers: HTTPHeaders, listing: ConnectionListing) -> Bool {
        if hopByHop.contains(where: { nameEquals(name, $0) }) { return true }
        if listing.listsClose && nameEquals(name, "close") { return true }
        guard listing.listsOthers else { return false }
        var listed = false
        forEachElement(of: headers, named: "connection") { element in
            listed = caseInsensitiveEquals(element, name)
            return !listed
        }
        return listed
    }

    /// `forEachElement` over every header named `lowercase` (a list may be split over several
    /// header lines, RFC 9110 §5.3); stops when `body` returns false.
    static func forEachElement(of headers: HTTPHeaders, named lowercase: String, _ body: (Substring) -> Bool) {
        var going = true
        for (name, value) in headers where going && nameEquals(name, lowercase) {
            forEachElement(value) { element in
                going = body(element)
                return going
            }
        }
    }

    /// Calls `body` with each element of a comma-separated header value (RFC 9110 §5.6.1) as NIO's
    /// `canonicalForm` splits it (empty segments skipped, spaces and tabs trimmed), without
    /// allocating; stops when `body` returns false.
    static func forEachElement(_ value: String, _ body: (Substring) -> Bool) {
        let bytes = value.utf8
        var segmentStart = bytes.startIndex
        var index = segmentStart
        while true {
            let atEnd = index == bytes.endIndex
            if atEnd || bytes[index] == UInt8(ascii: ",") {
                if segmentStart != index {
                    var first = segmentStart
                    var last = index
                    while first < last, isBlank(bytes[first]) { first = bytes.index(after: first) }
                    while last > first, isBlank(bytes[bytes.index(before: last)]) { last = bytes.index(before: last) }
                    if !body(value[first..<last]) { return }
                }
                if atEnd { return }
                index = bytes.index(after: index)
                segmentStart = index
            } else {
                index = bytes.index(after: index)
            }
        }
    }

    private static func isBlank(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
    }

    /// ASCII case-insensitive equality of two strings of any case.
    static func caseInsensitiveEquals(_ a: Substring, _ b: String) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        for (x, y) in zip(a.utf8, b.utf8) where x != y {
            let folded = x | 0x20
            guard folded == y | 0x20, folded >= UInt8(ascii: "a"), folded <= UInt8(ascii: "z") else { return false }
        }
        return true
    }

    /// ASCII case-insensitive equality of a header name with a lowercase name, without allocating.
    /// Compares contiguous UTF-8 in place (a `zip` over the two views was the top Ferry symbol in
    /// `perf`).
    static func nameEquals(_ name: some StringProtocol, _ lowercase: String) -> Bool {
        guard name.utf8.count == lowercase.utf8.count else { return false }
        let fast = name.utf8.withContiguousStorageIfAvailable { bytes in
            lowercase.utf8.withContiguousStorageIfAvailable { expected in
                for index in 0..<bytes.count where bytes[index] != expected[index] {
                    guard bytes[index] | 0x20 == expected[index], expected[index] >= UInt8(ascii: "a"),
                        expected[index] <= UInt8(ascii: "z")
                    else { return false }
                }
                return true
            }
        }
        if let fast, let result = fast { return result }
        for (byte, expected) in zip(name.utf8, lowercase.utf8) where byte != expected {
            guard byte | 0x20 == expected, expected >= UInt8(ascii: "a"), expected <= UInt8(ascii: "z") else {
                return false
            }
        }
        return true
    }

    /// The value of cookie `name` in the request's `Cookie` headers (RFC 6265 §5.4: `a=1; b=2`).
    public static func cookie(named name: String, in headers: HTTPHeaders) -> String? {
        cookie(named: name, in: headers["cookie"])
    }

    /// The value of the cookie `name` in the given `Cookie` header values.
    static func cookie(named name: String, in values: [String]) -> String? {
        for header in values {
            for pair in header.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " }
                guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
                return String(trimmed[trimmed.index(after: equals)...])
            }
        }
        return nil
    }

    /// Methods that can be retried safely after a failure on a reused connection (RFC 9110 §9.2.2).
    public static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .PUT, .DELETE, .TRACE: true
        default: false
        }
    }
}
