import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import FerryProxy

/// `BodyFramingTracker` against NIO's `HTTPResponseDecoder` (llhttp), which it replaced on the
/// upstream side: on every chunked body of a seeded corpus, fed to the tracker in random pieces,
/// both must accept or both refuse, and on accepting agree on the payload. What the relay sends
/// (each step's bytes up to `relayEnd`, then Ferry's own last chunk) must decode to that payload.
///
/// Where they may differ, the tracker is stricter on purpose: `deliberateDifferences`.
@Suite struct BodyFramingDifferentialTests {
    enum Verdict: Equatable, CustomStringConvertible {
        case incomplete
        case refused
        case ended(payload: [UInt8])

        var description: String {
            switch self {
            case .incomplete: "incomplete"
            case .refused: "refused"
            case .ended(let payload): "ended with \(payload.count) payload bytes"
            }
        }
    }

    static let head = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)

    /// NIO's verdict on a response with this chunked body.
    static func nio(_ body: [UInt8]) -> Verdict {
        let decoder = HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes)
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
        defer { _ = try? channel.finish() }
        // The decoder pairs each response with a request's method (a GET here).
        decoder.write(data: .head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
        var failed = false
        do {
            try channel.writeInbound(ByteBuffer(bytes: head + body))
        } catch {
            failed = true
        }
        // Parts decoded before an error are in the inbound buffer; an error after the end is
        // about bytes behind this response.
        var payload: [UInt8] = []
        while let part = try? channel.readInbound(as: HTTPClientResponsePart.self) {
            switch part {
            case .head: break
            case .body(let buffer): payload += buffer.readableBytesView
            case .end: return .ended(payload: payload)
            }
        }
        return failed ? .refused : .incomplete
    }

    static func tracker(_ fed: BodyFramingTrackerTests.Fed) -> Verdict {
        switch fed.verdict {
        case .incomplete: .incomplete
        case .refused: .refused
        case .ended: .ended(payload: fed.payload)
        }
    }

    /// A class of bodies the tracker refuses on purpose where llhttp accepts them, why, and examples.
    struct DeliberateDifference: Sendable {
        var reason: String
        var examples: [String]
        /// Whether a refusal (its error and the body) belongs to this class.
        var applies: @Sendable (BodyFramingTracker.Error.Code, [UInt8]) -> Bool
    }

    static let deliberateDifferences: [DeliberateDifference] = [
        DeliberateDifference(
            reason: "a chunk size of 16 or more hex digits, even with leading zeros (llhttp only checks that "
                + "the value fits 64 bits; 15 digits keep it within an Int and no real chunk comes near)",
            examples: ["0000000000000005\r\nhello\r\n0\r\n\r\n", "00000000000000000\r\n\r\n"],
            applies: { code, _ in code == .chunkSizeTooLarge }),
        DeliberateDifference(
            reason: "a chunk-size line longer than BodyFramingTracker.maxSizeLineBytes (llhttp has no limit: "
                + "extensions are unbounded otherwise)",
            examples: ["5;a=" + String(repeating: "b", count: 5000) + "\r\nhello\r\n0\r\n\r\n"],
            applies: { code, _ in code == .chunkSizeLineTooLong }),
        DeliberateDifference(
            reason: "a trailer section beyond BodyFramingTracker.maxTrailerBytes (read only to be dropped)",
            examples: [
                "0\r\n" + String(repeating: "X-Pad: " + String(repeating: "p", count: 93) + "\r\n", count: 170) + "\r\n"
            ],
            applies: { code, _ in code == .trailerTooLarge }),
        DeliberateDifference(
            reason: "a chunk extension value that is neither a token nor a quoted-string (RFC 9112 §7.1.1): "
                + "llhttp lets a token run into a quoted-string (`a=b\"c\"`)",
            examples: ["5;a=b\"c\"\r\nhello\r\n0\r\n\r\n", "5;a=b\"\"\r\nhello\r\n0\r\n\r\n"],
            applies: { code, body in
                code == .invalidChunkExtension
                    && body.indices.contains { index in
                        index > 0 && body[index] == UInt8(ascii: "\"") && HTTP1HeadParser.isToken(body[index - 1])
                    }
            }),
        DeliberateDifference(
            reason: "an empty chunk extension value (`a=`) or name (`;=b`): RFC 9112 §7.1.1 asks for a token or "
                + "quoted-string after `=` and a token before it; llhttp takes both empty",
            examples: ["5;a=\r\nhello\r\n0\r\n\r\n", "0;a=;b\r\n\r\n", "5;=b\r\nhello\r\n0\r\n\r\n"],
            applies: { code, body in
                code == .invalidChunkExtension
                    && (body.contains(pair: "=\r") || body.contains(pair: "=;") || body.contains(pair: ";="))
            }),
        DeliberateDifference(
            reason: "DEL (0x7f) in a quoted chunk extension value is no qdtext (RFC 9110 §5.6.4); llhttp takes it",
            examples: ["5;a=\"\u{7f}\"\r\nhello\r\n0\r\n\r\n"],
            applies: { code, body in code == .invalidChunkExtension && body.contains(0x7F) }),
    ]

    static func isDeliberate(_ fed: BodyFramingTrackerTests.Fed, _ body: [UInt8]) -> Bool {
        guard case .refused(let code) = fed.verdict else { return false }
        return deliberateDifferences.contains { $0.applies(code, body) }
    }

    /// Compares the two on one body fed in `pieces`; returns a description of an unexplained difference.
    static func compare(_ body: [UInt8], pieces: [[UInt8]]) -> String? {
        let reference = nio(body)
        let fed = BodyFramingTrackerTests.feed(.chunked, pieces)
        let verdict = tracker(fed)
        let shown = String(decoding: body.prefix(200), as: UTF8.self).debugDescription
        guard reference == verdict || isDeliberate(fed, body) else {
            return
                "\(shown) in \(pieces.map(\.count)) pieces\n  NIO: \(reference)\n  tracker: \(verdict) \(fed.verdict)"
        }
        if case .ended(let payload) = verdict {
            // The relay: the framing as it is up to the last chunk, then Ferry's own.
            let relayed = nio(fed.relayed + Array("0\r\n\r\n".utf8))
            guard relayed == .ended(payload: payload) else {
                return "\(shown): relayed bytes decode to \(relayed)"
            }
        }
        return nil
    }

    // MARK: - Corpus

    typealias Random = HeadParserCorpus.SplitMix64

    static let extensions = [
        ";a", ";a=b", ";name=\"x y\"", ";q=\"a\\\"b\"", ";k=v;w", ";!#$=~", ";e=\"\"", ";obs=\"\u{e9}\"",
    ]
    static let trailers = ["X-Sum: abc", "T:1", "Empty:", "Tab:\tv\t", "A-B: c d"]
    static let interesting: [UInt8] = Array(" \t\r\n;=\"\\0aAxG-:".utf8) + [0x00, 0x7F, 0x80, 0xFF]

    static func latin1(_ text: String) -> [UInt8] { text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) } }

    /// A chunked body and the offsets of its framing bytes (everything but chunk data).
    static func body(_ random: inout Random) -> (bytes: [UInt8], framing: [Int]) {
        var bytes: [UInt8] = []
        var framing: [Int] = []
        func frame(_ text: [UInt8]) {
            framing += bytes.count..<bytes.count + text.count
            bytes += text
        }
        func sizeLine(_ size: Int) {
            var hex = String(size, radix: 16, uppercase: Bool.random(using: &random))
            if Int.random(in: 0..<8, using: &random) == 0 {
                hex = String(repeating: "0", count: Int.random(in: 1...3, using: &random)) + hex
            }
            var line = hex
            if Int.random(in: 0..<3, using: &random) == 0 {
                for _ in 0..<Int.random(in: 1...3, using: &random) { line += extensions.randomElement(using: &random)! }
            }
            frame(latin1(line + "\r\n"))
        }
        for _ in 0..<Int.random(in: 0...4, using: &random) {
            let size =
                Bool.random(using: &random)
                ? Int.random(in: 1...20, using: &random) : Int.random(in: 1...3000, using: &random)
            sizeLine(size)
            bytes += (0..<size).map { _ in UInt8.random(in: 0...255, using: &random) }
            frame(Array("\r\n".utf8))
        }
        sizeLine(0)
        if Int.random(in: 0..<3, using: &random) == 0 {
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                frame(Array((trailers.randomElement(using: &random)! + "\r\n").utf8))
            }
        }
        frame(Array("\r\n".utf8))
        return (bytes, framing)
    }

    /// `count` bodies, about half of them mutated in their framing bytes (flips, replacements,
    /// insertions, deletions), a few cut short.
    static func corpus(count: Int, seed: UInt64) -> [[UInt8]] {
        var random = Random(state: seed)
        return (0..<count).map { _ in
            var (bytes, framing) = body(&random)
            if Bool.random(using: &random) {
                // From the last offset back, so that earlier offsets stay where they were.
                let offsets = (0..<Int.random(in: 1...2, using: &random)).map { _ in
                    framing.randomElement(using: &random)!
                }
                for at in offsets.sorted(by: >) {
                    switch Int.random(in: 0..<4, using: &random) {
                    case 0: bytes[at] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &random)
                    case 1: bytes[at] = interesting.randomElement(using: &random)!
                    case 2: bytes.insert(interesting.randomElement(using: &random)!, at: at)
                    default: bytes.remove(at: at)
                    }
                }
            }
            if Int.random(in: 0..<10, using: &random) == 0 {
                bytes.removeLast(Int.random(in: 0...bytes.count, using: &random))
            }
            return bytes
        }
    }

    /// `bytes` cut at a few random offsets (pieces may be empty).
    static func pieces(_ bytes: [UInt8], _ random: inout Random) -> [[UInt8]] {
        let cuts = (0..<Int.random(in: 0...6, using: &random)).map { _ in
            Int.random(in: 0...bytes.count, using: &random)
        }
        let bounds = [0] + cuts.sorted() + [bytes.count]
        return zip(bounds, bounds.dropFirst()).map { Array(bytes[$0..<$1]) }
    }

    // MARK: - Tests

    @Test func seededCorpusAgreesWithNIO() {
        var random = Random(state: 7)
        var differences: [String] = []
        var ended = 0
        var refused = 0
        var deliberate = 0
        for body in Self.corpus(count: 2500, seed: 42) {
            let pieces = Self.pieces(body, &random)
            if let difference = Self.compare(body, pieces: pieces) { differences.append(difference) }
            let fed = BodyFramingTrackerTests.feed(.chunked, pieces)
            switch fed.verdict {
            case .ended: ended += 1
            case .refused: refused += 1
            case .incomplete: break
            }
            if Self.isDeliberate(fed, body) && Self.nio(body) != .refused { deliberate += 1 }
        }
        // The corpus reaches both verdicts, so the agreement means something.
        #expect(ended > 500 && refused > 300, "ended \(ended), refused \(refused), deliberate \(deliberate)")
        #expect(
            differences.isEmpty, "\(differences.count) differences:\n\(differences.prefix(8).joined(separator: "\n"))")
    }

    @Test func handWrittenBodiesAgreeWithNIO() {
        let bodies = [
            "0\r\n\r\n", "5\r\nhello\r\n0\r\n\r\n", "5;a=b\r\nhello\r\n0\r\n\r\n", "5;a=\"x y\"\r\nhello\r\n0\r\n\r\n",
            "5;a;b=c\r\nhello\r\n0;z\r\nT: 1\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n", "5 ;a=b\r\nhello\r\n0\r\n\r\n",
            "5; a=b\r\nhello\r\n0\r\n\r\n", "5;a = b\r\nhello\r\n0\r\n\r\n", "5;\r\nhello\r\n0\r\n\r\n",
            "5;a=\r\nhello\r\n0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n", "-5\r\nhello\r\n0\r\n\r\n",
            "5\nhello\r\n0\r\n\r\n", "5\r\nhello\n0\r\n\r\n", "5\r\nhello0\r\n\r\n",
            "5;a=\"b\rc\"\r\nhello\r\n0\r\n\r\n",
            "0\r\nT: 1\r\n\r\n", "0\r\nT\r\n\r\n", "0\r\n T: 1\r\n\r\n", "0\r\nT : 1\r\n\r\n", "0\r\nT: 1\n\r\n",
            "0\r\nT: a\u{1}\r\n\r\n",
        ]
        for text in bodies {
            let body = Array(text.utf8)
            let difference = Self.compare(body, pieces: [body])
            #expect(difference == nil, "\(difference ?? "")")
        }
    }

    @Test func deliberateDifferencesAreRefusedByTheTrackerOnly() {
        for difference in Self.deliberateDifferences {
            for example in difference.examples {
                let body = Self.latin1(example)
                let fed = BodyFramingTrackerTests.feed(.chunked, [body])
                guard case .refused(let code) = fed.verdict else {
                    Issue.record("not refused (\(difference.reason)): \(example.prefix(80).debugDescription)")
                    continue
                }
                #expect(difference.applies(code, body), "\(example.prefix(80).debugDescription): \(code)")
                #expect(Self.nio(body) != .refused, "NIO refuses it too: \(example.prefix(80).debugDescription)")
            }
        }
    }

    @Test func everySplitOfTheHandWrittenBodiesAgreesWithNIO() {
        for text in BodyFramingTrackerTests.splitBodies {
            let body = Array(text.utf8)
            for cut in 0...body.count {
                let difference = Self.compare(body, pieces: [Array(body[..<cut]), Array(body[cut...])])
                #expect(difference == nil, "cut at \(cut): \(difference ?? "")")
            }
        }
    }
}

extension [UInt8] {
    /// Whether the two ASCII characters of `pair` occur next to each other.
    fileprivate func contains(pair: String) -> Bool {
        let pair = Array(pair.utf8)
        return indices.dropLast().contains { self[$0] == pair[0] && self[$0 + 1] == pair[1] }
    }
}
