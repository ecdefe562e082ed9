import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import FerryProxy

/// `HTTP1HeadParser` against NIO's `HTTPRequestDecoder`/`HTTPResponseDecoder` (llhttp), which it is
/// meant to replace on the hot path: on every head of the corpus both must accept or both refuse,
/// and on accepting agree on the method, target, version, status and every (name, value) in order.
///
/// Where they may differ, the difference is one of `deliberateDifferences` (the new parser is
/// stricter) or framing semantics llhttp checks inside its parser and Ferry leaves to
/// `RequestRules` (then `RequestRules.checkFraming` must refuse the head the new parser accepted).
@Suite struct HeadParserDifferentialTests {
    /// What a parser made of a head, in comparable terms.
    enum Verdict: Equatable, CustomStringConvertible {
        case incomplete
        case refused
        case head(Parsed)

        var description: String {
            switch self {
            case .incomplete: "incomplete"
            case .refused: "refused"
            case .head(let parsed): "\(parsed)"
            }
        }
    }

    struct Parsed: Equatable {
        var method = ""
        var target = ""
        var major = 0
        var minor = 0
        var status = 0
        var fields: [Field] = []

        struct Field: Equatable {
            var name: String
            var value: String
        }
    }

    /// A class of heads the new parser refuses on purpose where llhttp accepts them (or has not
    /// decided yet), why, and examples (a head starting with `HTTP/` is a response).
    struct DeliberateDifference: Sendable {
        var reason: String
        var examples: [String]
        /// Whether a refusal (its error and the bytes) belongs to this class.
        var applies: @Sendable (HTTP1HeadError, [UInt8]) -> Bool
    }

    static let deliberateDifferences: [DeliberateDifference] = [
        DeliberateDifference(
            reason: "an LF without CR ends no line (RFC 9112 §2.2 lets a recipient accept it; a proxy that "
                + "reads line ends differently from its backend is a smuggling vector)",
            examples: ["GET / HTTP/1.1\nHost: x\n\n", "GET / HTTP/1.1\r\nHost: x\n\r\n", "\nGET / HTTP/1.1\r\n\r\n"],
            applies: { error, _ in error.code == .bareLF }),
        DeliberateDifference(
            reason: "a CR not followed by LF, also among the empty lines before a request line (llhttp skips "
                + "any CR and LF there; RFC 9112 §2.2 only asks to ignore empty lines)",
            examples: ["\r\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "\r\n\r\n\rGET / HTTP/1.1\r\nHost: x\r\n\r\n"],
            applies: { error, _ in error.code == .bareCR }),
        DeliberateDifference(
            reason: "obs-text (bytes >= 0x80) in a request-target: a URI is ASCII (RFC 3986)",
            examples: ["GET /caf\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n"],
            applies: { error, bytes in
                error.code == .invalidTarget && error.offset < bytes.count && bytes[error.offset] >= 0x80
            }),
        DeliberateDifference(
            reason: "a request-target in none of RFC 9112 §3.2's forms where llhttp's URL states let it by "
                + "(`*` followed by more)",
            examples: ["OPTIONS *x HTTP/1.1\r\nHost: x\r\n\r\n"],
            applies: { error, _ in error.code == .invalidTargetForm }),
        DeliberateDifference(
            reason: "more than one SP between request line parts (RFC 9112 §3: exactly one; llhttp allows "
                + "several before the version)",
            examples: ["GET /  HTTP/1.1\r\nHost: x\r\n\r\n"],
            applies: { error, _ in error.code == .invalidSpacing }),
        DeliberateDifference(
            reason: "DEL (0x7f) in a field value is no field-vchar (RFC 9110 §5.5)",
            examples: ["GET / HTTP/1.1\r\nHost: x\r\nX-Del: a\u{7f}b\r\n\r\n"],
            applies: { error, bytes in
                error.code == .invalidFieldValue && error.offset < bytes.count && bytes[error.offset] == 0x7F
            }),
        DeliberateDifference(
            reason: "an HTTP/1 head says HTTP/1.0 or HTTP/1.1; llhttp also takes 0.9, 2.0 and more",
            examples: ["GET / HTTP/0.9\r\nHost: x\r\n\r\n", "GET / HTTP/2.0\r\nHost: x\r\n\r\n"],
            applies: { error, _ in error.code == .unsupportedVersion }),
        DeliberateDifference(
            reason: "a status code with a leading 0 (RFC 9110 §15: codes are 100-599; llhttp takes 000-099)",
            examples: ["HTTP/1.1 099 OK\r\n\r\n", "HTTP/1.1 000 OK\r\n\r\n"],
            applies: { error, bytes in
                error.code == .invalidStatus && error.offset < bytes.count && bytes[error.offset] == UInt8(ascii: "0")
            }),
        DeliberateDifference(
            reason: "a control character or DEL in a reason phrase (RFC 9112 §4: HTAB, SP, VCHAR, obs-text)",
            examples: ["HTTP/1.1 200 O\u{1}K\r\n\r\n", "HTTP/1.1 200 O\u{7f}K\r\n\r\n", "HTTP/1.1 200 \u{0}\r\n\r\n"],
            applies: { error, _ in error.code == .invalidReason }),
    ]

    /// Whether the new parser's refusal is one of `deliberateDifferences`.
    static func isDeliberate(_ outcome: HTTP1HeadParser.Outcome, _ bytes: [UInt8]) -> Bool {
        guard case .invalid(let error) = outcome else { return false }
        return deliberateDifferences.contains { $0.applies(error, bytes) }
    }

    /// Differences in what an accepted head says that are not refusals: NIO keeps trailing OWS in
    /// values (RFC 9110 §5.5 excludes it; the new parser trims both ends), and names M-SEARCH MSEARCH.
    static func normalized(_ verdict: Verdict) -> Verdict {
        guard case .head(var parsed) = verdict else { return verdict }
        if parsed.method == "MSEARCH" { parsed.method = "M-SEARCH" }
        for index in parsed.fields.indices {
            var value = Substring(parsed.fields[index].value)
            while let last = value.last, last == " " || last == "\t" { value.removeLast() }
            parsed.fields[index].value = String(value)
        }
        return .head(parsed)
    }

    // MARK: - The two parsers

    static func nioRequest(_ bytes: [UInt8]) -> Verdict {
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
        defer { _ = try? channel.finish() }
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
            guard case .head(let head)? = try channel.readInbound(as: HTTPServerRequestPart.self) else {
                return .incomplete
            }
            return .head(
                Parsed(
                    method: head.method.rawValue, target: head.uri, major: head.version.major,
                    minor: head.version.minor, fields: head.headers.map { Parsed.Field(name: $0.name, value: $0.value) }
                ))
        } catch {
            return .refused
        }
    }

    static func nioResponse(_ bytes: [UInt8]) -> Verdict {
        let decoder = HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward)
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
        defer { _ = try? channel.finish() }
        // The decoder pairs each response with a request's method (a GET here).
        decoder.write(data: .head(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")))
        do {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
            guard case .head(let head)? = try channel.readInbound(as: HTTPClientResponsePart.self) else {
                return .incomplete
            }
            return .head(
                Parsed(
                    major: head.version.major, minor: head.version.minor, status: Int(head.status.code),
                    fields: head.headers.map { Parsed.Field(name: $0.name, value: $0.value) }))
        } catch {
            return .refused
        }
    }

    static func ours(_ bytes: [UInt8], request: Bool) -> (HTTP1HeadParser.Outcome, Verdict) {
        bytes.withUnsafeBytes { raw in
            let outcome =
                request ? HTTP1HeadParser.parseRequest(raw) : HTTP1HeadParser.parseResponse(raw)
            switch outcome {
            case .incomplete: return (outcome, .incomplete)
            case .invalid: return (outcome, .refused)
            case .complete(let head, _):
                func text(_ range: Range<Int>) -> String { String(decoding: raw[range], as: UTF8.self) }
                let parsed = Parsed(
                    method: text(head.method), target: text(head.target), major: Int(head.versionMajor),
                    minor: Int(head.versionMinor), status: head.status,
                    fields: head.fields.map { Parsed.Field(name: text($0.name), value: text($0.value)) })
                return (outcome, .head(parsed))
            }
        }
    }

    /// Framing that llhttp refuses inside its parser and Ferry refuses in `RequestRules` (requests)
    /// or treats when framing the response (responses): the new parser hands such heads on. One
    /// case RequestRules accepts where llhttp refuses: repeated identical Content-Length values
    /// (RFC 9110 §8.6 lets a recipient take them as one).
    static func framingIsTheCallersJob(_ parsed: Parsed, request: Bool) -> Bool {
        let lengths = parsed.fields.filter { $0.name.lowercased() == "content-length" }.map(\.value)
        let framing = parsed.fields.contains { ["content-length", "transfer-encoding"].contains($0.name.lowercased()) }
        guard request else { return framing }
        if lengths.count > 1 && Set(lengths).count == 1 { return true }
        let head = HTTPRequestHead(
            version: HTTPVersion(major: parsed.major, minor: parsed.minor), method: HTTPMethod(rawValue: parsed.method),
            uri: parsed.target, headers: HTTPHeaders(parsed.fields.map { ($0.name, $0.value) }))
        return RequestRules.checkFraming(head, maxBodyBytes: Int.max) != nil
    }

    /// Compares the two parsers on one head; returns a description of an unexplained difference.
    static func compare(_ bytes: [UInt8], request: Bool, ended: Bool = false) -> String? {
        let reference = normalized(request ? nioRequest(bytes) : nioResponse(bytes))
        let (outcome, verdict) = ours(bytes, request: request)
        if reference == verdict { return nil }
        if isDeliberate(outcome, bytes) { return nil }
        if reference == .refused, case .head(let parsed) = verdict, framingIsTheCallersJob(parsed, request: request) {
            return nil
        }
        if !ended && (reference == .incomplete || verdict == .incomplete) {
            // One parser decided before the other: they must agree once the head is ended.
            let end: [UInt8] = bytes.last == 0x0D ? [0x0A, 0x0D, 0x0A] : [0x0D, 0x0A, 0x0D, 0x0A]
            return compare(bytes + end, request: request, ended: true)
        }
        let shown = String(decoding: bytes.prefix(300), as: UTF8.self).debugDescription
        return "\(request ? "request" : "response") \(shown)\n  NIO: \(reference)\n  new: \(verdict) \(outcome)"
    }

    // MARK: - Tests

    @Test func handWrittenRequestsAgreeWithNIO() {
        for text in HeadParserCorpus.validRequests + HeadParserCorpus.oddRequests {
            let difference = Self.compare(Array(text.utf8), request: true)
            #expect(difference == nil, "\(difference ?? "")")
        }
    }

    @Test func handWrittenResponsesAgreeWithNIO() {
        for text in HeadParserCorpus.validResponses + HeadParserCorpus.oddResponses {
            let difference = Self.compare(Array(text.utf8), request: false)
            #expect(difference == nil, "\(difference ?? "")")
        }
    }

    @Test func validHeadsAreAcceptedByBoth() {
        for text in HeadParserCorpus.validRequests {
            #expect(Self.nioRequest(Array(text.utf8)) != .refused, "\(text.debugDescription)")
            #expect(Self.ours(Array(text.utf8), request: true).1 != .refused, "\(text.debugDescription)")
        }
        for text in HeadParserCorpus.validResponses {
            #expect(Self.ours(Array(text.utf8), request: false).1 != .refused, "\(text.debugDescription)")
        }
    }

    @Test func deliberateDifferencesAreRefused() {
        for difference in Self.deliberateDifferences {
            for example in difference.examples {
                let bytes = Array(example.utf8)
                let (outcome, _) = Self.ours(bytes, request: !example.hasPrefix("HTTP/"))
                guard case .invalid(let error) = outcome else {
                    Issue.record("not refused (\(difference.reason)): \(example.debugDescription)")
                    continue
                }
                #expect(difference.applies(error, bytes), "\(example.debugDescription): \(error)")
            }
        }
    }

    @Test(arguments: [true, false])
    func seededMutationsAgreeWithNIO(request: Bool) {
        let seeds =
            request
            ? HeadParserCorpus.validRequests + HeadParserCorpus.oddRequests.filter { $0.utf8.count < 200 }
            : HeadParserCorpus.validResponses + HeadParserCorpus.oddResponses
        var differences: [String] = []
        var accepted = 0
        var refused = 0
        for bytes in HeadParserCorpus.mutations(of: seeds, count: 2000, seed: request ? 1 : 2) {
            if let difference = Self.compare(bytes, request: request) { differences.append(difference) }
            switch Self.ours(bytes, request: request).1 {
            case .head: accepted += 1
            case .refused: refused += 1
            case .incomplete: break
            }
        }
        // The mutations reach both verdicts, so the agreement means something.
        #expect(accepted > 100 && refused > 100, "accepted \(accepted), refused \(refused)")
        #expect(
            differences.isEmpty, "\(differences.count) differences:\n\(differences.prefix(8).joined(separator: "\n"))")
    }

    @Test func fuzzSeedCorpusAgreesWithNIO() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus")
        let names = try FileManager.default.contentsOfDirectory(atPath: corpus.path).sorted()
        #expect(names.count >= 10)
        for name in names {
            let bytes = try Self.read(corpus.appendingPathComponent(name).path)
            // Seeds that start like a status line are responses.
            let difference = Self.compare(bytes, request: !bytes.starts(with: Array("HTTP/".utf8)))
            #expect(difference == nil, "\(name): \(difference ?? "")")
        }
    }

    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test func everyProperPrefixOfAValidHeadIsIncomplete() {
        for (texts, request) in [(HeadParserCorpus.validRequests, true), (HeadParserCorpus.validResponses, false)] {
            for text in texts {
                let bytes = Array(text.utf8)
                for length in 0..<bytes.count {
                    let (outcome, _) = Self.ours(Array(bytes[..<length]), request: request)
                    #expect(outcome == .incomplete, "prefix \(length) of \(text.debugDescription): \(outcome)")
                }
            }
        }
    }

    @Test func headFollowedByBodyReportsTheHeadLength() {
        for (texts, request) in [(HeadParserCorpus.validRequests, true), (HeadParserCorpus.validResponses, false)] {
            for text in texts {
                let head = Array(text.utf8)
                for body in ["", "hello", "\r\n", "GET / HTTP/1.1\r\n\r\n"] {
                    let (outcome, _) = Self.ours(head + Array(body.utf8), request: request)
                    guard case .complete(_, let length) = outcome else {
                        Issue.record("\(text.debugDescription) + \(body.debugDescription): \(outcome)")
                        continue
                    }
                    #expect(length == head.count, "\(text.debugDescription)")
                }
            }
        }
    }
}
