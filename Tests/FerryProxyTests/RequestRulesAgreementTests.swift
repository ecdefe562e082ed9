import NIOCore
import NIOHTTP1
import Testing

@testable import FerryProxy

/// The header rules run on every request, so they scan headers in place instead of going through
/// NIO's `canonicalForm` (which allocates arrays and substrings). This checks the in-place versions
/// against straightforward `canonicalForm` versions on many generated heads.
@Suite struct RequestRulesAgreementTests {
    enum Reference {
        static func checkFraming(_ head: HTTPRequestHead, maxBodyBytes: Int) -> RequestRules.Rejection? {
            let lengths = head.headers[canonicalForm: "content-length"]
            let encodings = head.headers[canonicalForm: "transfer-encoding"].map { $0.lowercased() }
            if !lengths.isEmpty && !encodings.isEmpty {
                return .badRequest("both Content-Length and Transfer-Encoding")
            }
            if let first = lengths.first {
                guard lengths.allSatisfy({ $0 == first }) else { return .badRequest("differing Content-Length values") }
                guard first.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                    let length = Int(first)
                else {
                    return .badRequest("invalid Content-Length")
                }
                if length > maxBodyBytes { return .bodyTooLarge }
            }
            if !encodings.isEmpty {
                guard encodings.last == "chunked", encodings.count == 1 else {
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

        static func connectionUpgradeAndUpgrade(_ head: HTTPRequestHead) -> (Bool, Bool) {
            let tokens = head.headers[canonicalForm: "connection"].map { $0.lowercased() }
            let upgrade = head.headers[canonicalForm: "upgrade"].map { $0.lowercased() }
            return (tokens.contains("upgrade"), upgrade.contains("websocket"))
        }

        static func hopByHop(_ headers: HTTPHeaders) -> Set<String> {
            let named = headers[canonicalForm: "connection"].map { $0.lowercased() }
            return Set(
                (headers.map { $0.name.lowercased() } + ["close", "x-other"]).filter {
                    RequestRules.hopByHop.contains($0) || named.contains($0)
                })
        }

        static func lastElementIsChunked(_ headers: HTTPHeaders) -> Bool {
            headers[canonicalForm: "transfer-encoding"].last?.lowercased() == "chunked"
        }
    }

    static let names = [
        "Content-Length", "content-length", "Transfer-Encoding", "Host", "Connection", "connection", "Upgrade",
        "Keep-Alive", "TE", "X-Other", "x-other",
    ]
    static let values = [
        "5", "5, 5", "5,6", "", " ", " , ", "+5", "chunked", "Chunked", "gzip, chunked", "chunked, gzip", "upgrade",
        "Upgrade, keep-alive", "x-other", "X-Other ,\tkeep-alive", "a,,b", "websocket", "WebSocket", "close", "h2c",
        "te", "localhost:8443", "5,\t5", "\tchunked ", "x-other\t", "upgrade\t, close",
    ]

    @Test func inPlaceHeaderRulesAgreeWithCanonicalForm() {
        var random = SplitMix(seed: 42)
        for _ in 0..<20_000 {
            var headers = HTTPHeaders()
            for _ in 0..<random.next(below: 5) {
                headers.add(
                    name: Self.names[random.next(below: Self.names.count)],
                    value: Self.values[random.next(below: Self.values.count)])
            }
            let version: HTTPVersion = random.next(below: 4) == 0 ? .http1_0 : .http1_1
            let head = HTTPRequestHead(
                version: version, method: random.next(below: 2) == 0 ? .GET : .POST, uri: "/", headers: headers)
            let context = "\(head.version) \(Array(headers))"
            #expect(
                RequestRules.checkFraming(head, maxBodyBytes: 5) == Reference.checkFraming(head, maxBodyBytes: 5),
                "\(context)")
            let (connectionUpgrade, websocket) = Reference.connectionUpgradeAndUpgrade(head)
            let facts = RequestRules.RequestHeadFacts(head)
            #expect(facts.listing.listsUpgrade == connectionUpgrade, "\(context)")
            #expect(facts.upgradeListsWebSocket == websocket, "\(context)")
            if !websocket {
                #expect(RequestRules.upgradeKind(head) == .none, "\(context)")
            } else {
                #expect(RequestRules.upgradeKind(head) != .none, "\(context)")
            }
            let listing = RequestRules.ConnectionListing(headers)
            let hopByHop = Set(
                (headers.map { $0.name } + ["close", "Close", "x-other"]).filter {
                    RequestRules.isHopByHop($0, in: headers, listing: listing)
                }.map { $0.lowercased() })
            #expect(hopByHop == Reference.hopByHop(headers), "\(context)")
            // The one-pass facts of a response head agree with the separate scans.
            let response = RequestRules.ResponseHeadFacts(headers)
            #expect(response.chunked == Reference.lastElementIsChunked(headers), "\(context)")
            #expect(response.hasContentLength == headers.contains(name: "content-length"), "\(context)")
            #expect(response.listing == listing, "\(context)")
            #expect(facts.listing == listing, "\(context)")
        }
    }

    /// The facts of a head read from the client's bytes are those read from the parsed head, and the
    /// upstream request written from the bytes is, byte for byte, the one written from the head: hop-by-hop fields (named or listed in Connection), X-Forwarded-*, Forwarded,
    /// the framing fields, Expect, Host, on generated heads through the real parser.
    @Test func upstreamRequestFromTheClientsBytesEqualsTheOneFromItsHead() throws {
        let names =
            Self.names + [
                "X-Forwarded-For", "x-forwarded-for", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "Expect",
                "Close", "Cookie", "Accept",
            ]
        let values =
            Self.values + [
                "10.0.0.9", "100-continue", "a=1; b=2", "*/*", "x-forwarded-for", "close, te", "keep-alive",
                "Keep-Alive, close",
            ]
        var random = SplitMix(seed: 7)
        var compared = 0
        for round in 0..<5_000 {
            var text =
                (random.next(below: 3) == 0 ? "POST" : "GET") + " /a?b HTTP/1.\(random.next(below: 4) == 0 ? 0 : 1)\r\n"
            for _ in 0..<random.next(below: 7) {
                text += "\(names[random.next(below: names.count)]):\(random.next(below: 2) == 0 ? " " : "")"
                text += "\(values[random.next(below: values.count)])\r\n"
            }
            text += "\r\n"
            let bytes = ByteBuffer(string: text)
            guard case .complete(let parsed, let length) = HTTP1HeadParser.parseRequest(bytes) else { continue }
            let raw = RawRequestHead(bytes: bytes.getSlice(at: 0, length: length)!, head: parsed)
            let head = HTTPRequestHead(
                version: HTTPVersion(major: 1, minor: Int(parsed.versionMinor)),
                method: text.hasPrefix("POST") ? .POST : .GET, uri: "/a?b",
                headers: HTTPHeaders(
                    parsed.fields.map { field in
                        (
                            bytes.getString(at: field.name.lowerBound, length: field.name.count)!,
                            bytes.getString(at: field.value.lowerBound, length: field.value.count)!
                        )
                    }))
            let facts = RequestRules.RequestHeadFacts(head)
            #expect(RequestRules.RequestHeadFacts(raw: raw) == facts, "\(text.debugDescription)")
            // The exchange's view of the bytes reads what the parsed head says.
            let fromRaw = ExchangeRequest(
                method: head.method, uri: head.uri, version: head.version, fields: .raw(raw), facts: facts)
            let fromHeaders = ExchangeRequest(head)
            #expect(fromRaw.isKeepAlive == head.isKeepAlive, "\(text.debugDescription)")
            #expect(fromHeaders.isKeepAlive == head.isKeepAlive, "\(text.debugDescription)")
            #expect(fromRaw.facts.upgradeKind(fromRaw) == RequestRules.upgradeKind(head), "\(text.debugDescription)")
            #expect(fromRaw.headers == head.headers, "\(text.debugDescription)")
            for name in ["host", "Cookie", "X-FORWARDED-FOR", "x-other", "absent"] {
                #expect(fromRaw.first(name: name) == head.headers.first(name: name), "\(name) \(text.debugDescription)")
                #expect(fromRaw.values(name: name) == head.headers[name], "\(name) \(text.debugDescription)")
            }
            let address = round % 3 == 0 ? nil : (round % 3 == 1 ? "192.0.2.1" : "2001:db8::1")
            var fromHead = ByteBuffer()
            var fromBytes = ByteBuffer()
            let framing = RequestRules.writeUpstreamRequest(
                head, facts: facts, uri: "/u", clientAddress: address, tls: round % 2 == 0, into: &fromHead)
            let rawFraming = RequestRules.writeUpstreamRequest(
                raw: raw, method: head.method, facts: facts, uri: "/u", clientAddress: address, tls: round % 2 == 0,
                into: &fromBytes)
            #expect(framing == rawFraming, "\(text.debugDescription)")
            #expect(
                String(buffer: fromBytes) == String(buffer: fromHead),
                "\(text.debugDescription)\nfrom the head:\n\(String(buffer: fromHead))\nfrom the bytes:\n\(String(buffer: fromBytes))"
            )
            compared += 1
        }
        #expect(compared > 4_000)
    }

    @Test func forwardedHeaderIsBuiltInPlace() {
        let request = HTTPRequestHead(
            version: .http1_1, method: .GET, uri: "/", headers: ["Host": "example.com:8443"])
        let v4 = RequestRules.upstreamHead(request, uri: "/", clientAddress: "10.0.0.1", tls: true, upgrade: false)
        #expect(v4.headers.first(name: "forwarded") == "for=10.0.0.1;proto=https;host=\"example.com:8443\"")
        let v6 = RequestRules.upstreamHead(request, uri: "/", clientAddress: "::1", tls: false, upgrade: false)
        #expect(v6.headers.first(name: "forwarded") == "for=\"[::1]\";proto=http;host=\"example.com:8443\"")
        let quoted = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["Host": "a\"b"])
        let none = RequestRules.upstreamHead(quoted, uri: "/", clientAddress: nil, tls: true, upgrade: false)
        #expect(none.headers.first(name: "forwarded") == "proto=https")
    }
}

/// A small deterministic generator (SplitMix64), so a failure can be reproduced.
struct SplitMix {
    var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next(below bound: Int) -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Int(z % UInt64(bound))
    }
}
