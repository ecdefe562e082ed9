/// Heads for `HeadParserDifferentialTests`: hand-written valid, odd and malicious ones (the
/// smuggling-style cases of the proxy, hazard and fuzz tests among them) and seeded mutations.
enum HeadParserCorpus {
    static let validRequests: [String] = [
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /tts-ws/ok/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /tts-ws/tts/wav/file0.wav HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /request HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
        "POST /tts-ws/flaky HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "GET /tts-ws/tts HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "GET http://h/tts-ws/tts/wav/x HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET https://example.com:8443/a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "HEAD /index.html HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nUser-Agent: fuzz\r\n\r\n",
        "PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        "DELETE /a%2e%2e/ HTTP/1.1\r\nHost: x\r\nRange: bytes=0-10\r\n\r\n",
        "PATCH /?qqqqqqqqqqqqqqqqqqqqqqqqqqqqqq HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost:x\r\nX-Empty:\r\nX-Tabs:\t a \t\r\nX-Inner: a  b\tc\r\n\r\n",
        "GET /a HTTP/1.1\r\nhOsT: x\r\nX-Token-!#$%&'*+-.^_`|~: v\r\nX-Obs: caf\u{e9}\r\n\r\n",
        "GET /%zz HTTP/1.1\r\nHost: x\r\nCookie: a=b; c=d\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "M-SEARCH * HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET //x HTTP/1.1\r\nHost: a, b\r\n\r\n",
    ]

    static let oddRequests: [String] = [
        // Framing ambiguities (RequestRules' job, llhttp refuses some of them itself).
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  chunked \r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
        "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: content-length, transfer-encoding\r\n\r\n",
        // Malformed lines.
        "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n\tb\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Space : a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Tab\t: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Ctl: a\u{1}b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\u{0}b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-Del: a\u{7f}b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-NoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nHo\u{0}st: x\r\n\r\n",
        "GET / HTTP/1.1\r\nH\u{e9}st: x\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GARBAGE\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / \r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /  HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n",
        " GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / http/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        "GET / HTTP/0.9\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.2\r\nHost: x\r\n\r\n",
        "GET / HTTP/3.0\r\nHost: x\r\n\r\n",
        "GET / HTTP/11\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.10\r\nHost: x\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "get / HTTP/1.1\r\nHost: x\r\n\r\n",
        "FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
        " / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a\u{0}b HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a\u{7f} HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /caf\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET foo HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT /path HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT example.com HTTP/1.1\r\nHost: x\r\n\r\n",
        // Line endings.
        "GET / HTTP/1.1\nHost: x\n\n",
        "GET / HTTP/1.1\r\nHost: x\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n\n",
        "GET / HTTP/1.1\rHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
        "\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "\r\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        // Big ones.
        "GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + String(repeating: "v", count: 9000) + "\r\n\r\n",
        "GET /" + String(repeating: "a", count: 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n",
    ]

    static let validResponses: [String] = [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "HTTP/1.0 200 OK\r\nServer: tornado\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 \u{e9}t\u{e9}\tok \r\nSet-Cookie: a=b\r\nSet-Cookie: c=d\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 599 Custom\r\nContent-Length: 0\r\n\r\n",
    ]

    static let oddResponses: [String] = [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Space : a\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        "HTTP/1.1 200 OK\r\nX-Nul: a\u{0}b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 OK\r\n\r\n",
        "HTTP/1.1 000 OK\r\n\r\n",
        "HTTP/1.1 999 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1  200 OK\r\n\r\n",
        "HTTP/1.1 200 O\u{1}K\r\n\r\n",
        "HTTP/1.1 200 O\u{7f}K\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r",
        "ICY 200 OK\r\n\r\n",
        "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ]

    /// A deterministic generator (SplitMix64), so that every run mutates the same way.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let interesting: [UInt8] = [0x20, 0x09, 0x0D, 0x0A, 0x00, 0x7F, 0x80, 0xFF, 0x3A, 0x2F, 0x2C, 0x41, 0x61]

    /// `count` mutations of `seeds`: byte flips, insertions of interesting bytes, deletions, line
    /// duplication and truncation.
    static func mutations(of seeds: [String], count: Int, seed: UInt64) -> [[UInt8]] {
        var random = SplitMix64(state: seed)
        var out: [[UInt8]] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            var bytes = Array(seeds.randomElement(using: &random)!.utf8)
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<6, using: &random) {
                case 0: bytes[at] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &random)
                case 1, 2: bytes.insert(interesting.randomElement(using: &random)!, at: at)
                case 3: bytes[at] = interesting.randomElement(using: &random)!
                case 4:
                    // Duplicate the line that contains `at`.
                    let start = bytes[..<at].lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
                    let end = bytes[at...].firstIndex(of: 0x0A).map { $0 + 1 } ?? bytes.count
                    bytes.insert(contentsOf: bytes[start..<end], at: start)
                default: bytes.remove(at: at)
                }
            }
            if Int.random(in: 0..<10, using: &random) == 0 {
                bytes.removeLast(Int.random(in: 0...bytes.count, using: &random))
            }
            out.append(bytes)
        }
        return out
    }
}
