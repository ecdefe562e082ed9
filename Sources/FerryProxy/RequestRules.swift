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

    /// Framing checks of RFC 9112 §6: both Content-Length and Transfer-Encoding, several differing
    /// Content-Length values, a Transfer-Encoding other than a final `chunked`, or an invalid length
    /// all make the message boundary ambiguous, which is what request smuggling exploits.
    public static func checkFraming(_ head: HTTPRequestHead, maxBodyBytes: Int) -> Rejection? {
        let lengths = head.headers[canonicalForm: "content-length"]
        let encodings = head.headers[canonicalForm: "transfer-encoding"].map { $0.lowercased() }
        if !lengths.isEmpty && !encodings.isEmpty {
            return .badRequest("both Content-Length and Transfer-Encoding")
        }
        if let first = lengths.first {
            guard lengths.allSatisfy({ $0 == first }) else { return .badRequest("differing Content-Length values") }
            guard first.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let length = Int(first)
            else {
                return .badRequest("invalid Content-Length")
            }
            if length > maxBodyBytes { return .bodyTooLarge }
        }
        if !encodings.isEmpty {
            guard encodings.last == "chunked", encodings.dropLast().allSatisfy({ $0 != "chunked" }),
                encodings.count == 1
            else {
                return .badRequest("Transfer-Encoding other than a single final chunked")
            }
            if head.version.major == 1 && head.version.minor == 0 {
                return .badRequest("Transfer-Encoding in an HTTP/1.0 request")
            }
        }
        if head.headers[canonicalForm: "host"].count > 1 { return .badRequest("several Host headers") }
        if head.version.major == 1 && head.version.minor == 1 && head.headers["host"].isEmpty {
            return .badRequest("request without Host header")
        }
        return nil
    }

    public static func checkLimits(_ head: HTTPRequestHead, maxHeaderBytes: Int, maxHeaderCount: Int) -> Rejection? {
        var count = 0
        var bytes = head.uri.utf8.count + 16
        for (name, value) in head.headers {
            count += 1
            bytes += name.utf8.count + value.utf8.count + 4
        }
        if count > maxHeaderCount { return .headersTooLarge("\(count) header fields (limit \(maxHeaderCount))") }
        if bytes > maxHeaderBytes { return .headersTooLarge("\(bytes) bytes of headers (limit \(maxHeaderBytes))") }
        return nil
    }

    public enum UpgradeKind: Equatable, Sendable {
        case none
        case websocket
        /// Asked for an upgrade, but not a valid WebSocket one (other protocol, missing key or version).
        case invalid(String)
    }

    /// A WebSocket upgrade (RFC 6455 §4.1): `Connection: upgrade`, `Upgrade: websocket`, a
    /// `Sec-WebSocket-Key` of 16 bytes in base64 and version 13, on a GET.
    public static func upgradeKind(_ head: HTTPRequestHead) -> UpgradeKind {
        let connectionTokens = head.headers[canonicalForm: "connection"].map { $0.lowercased() }
        let upgrade = head.headers[canonicalForm: "upgrade"].map { $0.lowercased() }
        guard connectionTokens.contains("upgrade") || !upgrade.isEmpty else { return .none }
        guard connectionTokens.contains("upgrade"), upgrade.contains("websocket") else {
            return .invalid("only WebSocket upgrades are supported")
        }
        guard head.method == .GET else { return .invalid("a WebSocket upgrade must be a GET") }
        guard let key = head.headers.first(name: "sec-websocket-key"), key.utf8.count == 24, key.hasSuffix("==") else {
            return .invalid("missing or malformed Sec-WebSocket-Key")
        }
        guard head.headers.first(name: "sec-websocket-version") == "13" else {
            return .invalid("unsupported Sec-WebSocket-Version (13 is required)")
        }
        return .websocket
    }

    /// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1), plus the ones the
    /// `Connection` header names.
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authenticate",
        "proxy-authorization",
    ]

    /// The request head Ferry sends upstream. `Transfer-Encoding: chunked` is kept (the encoder then
    /// frames the body as chunks); Host is preserved; X-Forwarded-* and Forwarded are set.
    ///
    /// Both heads are rebuilt once per request, so they are built without per-header allocations:
    /// names are compared in place (`nameEquals`) and the result is assembled as one array.
    public static func upstreamHead(
        _ head: HTTPRequestHead, uri: String, clientAddress: String?, tls: Bool, upgrade: Bool
    ) -> HTTPRequestHead {
        let named = connectionTokens(head.headers)
        var kept: [(String, String)] = []
        kept.reserveCapacity(head.headers.count + 5)
        var host: String?
        var forwardedFor: String?
        for (name, value) in head.headers {
            if isHopByHop(name, named: named) { continue }
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
            kept.append((name, value))
        }
        let proto = tls ? "https" : "http"
        if let clientAddress {
            kept.append(("X-Forwarded-For", forwardedFor.map { "\($0), \(clientAddress)" } ?? clientAddress))
        } else if let forwardedFor {
            kept.append(("X-Forwarded-For", forwardedFor))
        }
        kept.append(("X-Forwarded-Proto", proto))
        if let host { kept.append(("X-Forwarded-Host", host)) }
        var forwarded = "proto=\(proto)"
        if let clientAddress {
            forwarded =
                (clientAddress.contains(":") ? "for=\"[\(clientAddress)]\"" : "for=\(clientAddress)") + ";" + forwarded
        }
        if let host, !host.contains("\"") { forwarded += ";host=\"\(host)\"" }
        kept.append(("Forwarded", forwarded))
        if upgrade {
            kept.append(("Connection", "Upgrade"))
            kept.append(("Upgrade", "websocket"))
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: uri, headers: HTTPHeaders(kept))
    }

    /// The response head Ferry sends to the client: hop-by-hop headers of the backend's hop removed;
    /// framing is left to NIO's encoder (chunked when the length is unknown).
    public static func downstreamHead(_ head: HTTPResponseHead, keepAlive: Bool) -> HTTPResponseHead {
        let named = connectionTokens(head.headers)
        var kept: [(String, String)] = []
        kept.reserveCapacity(head.headers.count + 1)
        for (name, value) in head.headers {
            if isHopByHop(name, named: named) || nameEquals(name, "transfer-encoding") { continue }
            kept.append((name, value))
        }
        // Any Connection header of the backend's was hop-by-hop and is gone: this one is Ferry's.
        kept.append(("Connection", keepAlive ? "keep-alive" : "close"))
        return HTTPResponseHead(version: .http1_1, status: head.status, headers: HTTPHeaders(kept))
    }

    /// The header names listed in `Connection` (lowercased); empty, without allocating, when there is none.
    static func connectionTokens(_ headers: HTTPHeaders) -> [String] {
        guard headers.contains(name: "connection") else { return [] }
        return headers[canonicalForm: "connection"].map { $0.lowercased() }
    }

    static func isHopByHop(_ name: String, named: [String]) -> Bool {
        hopByHop.contains { nameEquals(name, $0) } || named.contains { nameEquals(name, $0) }
    }

    /// ASCII case-insensitive equality of a header name with a lowercase name, without allocating.
    static func nameEquals(_ name: String, _ lowercase: String) -> Bool {
        guard name.utf8.count == lowercase.utf8.count else { return false }
        for (byte, expected) in zip(name.utf8, lowercase.utf8) where byte != expected {
            guard byte | 0x20 == expected, expected >= UInt8(ascii: "a"), expected <= UInt8(ascii: "z") else {
                return false
            }
        }
        return true
    }

    /// Methods that can be retried safely after a failure on a reused connection (RFC 9110 §9.2.2).
    public static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .PUT, .DELETE, .TRACE: true
        default: false
        }
    }
}
