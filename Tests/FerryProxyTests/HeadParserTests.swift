import NIOCore
import Testing

@testable import FerryProxy

/// The head parser's API: offsets, case-insensitive lookup without allocation, limits, errors.
@Suite struct HeadParserTests {
    func request(_ text: String, limits: HTTP1HeadParser.Limits = .init()) -> (HTTP1HeadParser.Outcome, [UInt8]) {
        let bytes = Array(text.utf8)
        return (bytes.withUnsafeBytes { HTTP1HeadParser.parseRequest($0, limits: limits) }, bytes)
    }

    func text(_ bytes: [UInt8], _ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }

    @Test func requestOffsetsPointAtTheParts() throws {
        let (outcome, bytes) = request("\r\nPOST /a?b HTTP/1.0\r\nHost: x\r\nX-Pad: \t a b \t\r\nX-Empty:\r\n\r\nbody")
        guard case .complete(let head, let length) = outcome else { throw TestFailure("\(outcome)") }
        #expect(length == bytes.count - 4)
        #expect(text(bytes, head.method) == "POST")
        #expect(text(bytes, head.target) == "/a?b")
        #expect(head.versionMajor == 1 && head.versionMinor == 0 && head.status == 0)
        #expect(head.fields.map { text(bytes, $0.name) } == ["Host", "X-Pad", "X-Empty"])
        #expect(head.fields.map { text(bytes, $0.value) } == ["x", "a b", ""])
        #expect(text(bytes, head.fields[1].line) == "X-Pad: \t a b \t\r\n")
    }

    @Test func responseOffsetsPointAtTheParts() throws {
        let bytes = Array("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".utf8)
        let outcome = bytes.withUnsafeBytes { HTTP1HeadParser.parseResponse($0) }
        guard case .complete(let head, let length) = outcome else { throw TestFailure("\(outcome)") }
        #expect(length == bytes.count)
        #expect(head.status == 404 && text(bytes, head.reason) == "Not Found")
        #expect(head.method.isEmpty && head.target.isEmpty)
    }

    @Test func fieldsAreFoundByNameIgnoringCase() throws {
        let (outcome, bytes) = request(
            "GET / HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 1\r\nX: y\r\nContent-Length: 2\r\nContent-Lengths: 3\r\n\r\n")
        guard case .complete(let head, _) = outcome else { throw TestFailure("\(outcome)") }
        bytes.withUnsafeBytes { raw in
            var values: [String] = []
            head.forEachField(named: "content-length", in: raw) {
                values.append(String(decoding: raw[$0.value], as: UTF8.self))
            }
            #expect(values == ["1", "2"])
            #expect(head.count(named: "content-length", in: raw) == 2)
            #expect(head.count(named: "transfer-encoding", in: raw) == 0)
            #expect(head.firstField(named: "host", in: raw).map { text(bytes, $0.value) } == "x")
            #expect(HTTP1Head.name(of: head.fields[2], equals: "x", in: raw))
        }
    }

    @Test func headWithoutEndWithinTheLimitIsTooLarge() {
        let limits = HTTP1HeadParser.Limits(maxHeadBytes: 40, maxFields: 10)
        let head = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        #expect(request(head, limits: limits).0 != .incomplete)
        let long = "GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + String(repeating: "v", count: 30)
        #expect(request(long, limits: limits).0 == .invalid(HTTP1HeadError(code: .headTooLarge, offset: 40)))
        // Below the limit, the same bytes are only incomplete.
        #expect(request(String(decoding: Array(long.utf8)[..<39], as: UTF8.self), limits: limits).0 == .incomplete)
        // A head of exactly the limit is complete.
        let exact = HTTP1HeadParser.Limits(maxHeadBytes: head.utf8.count, maxFields: 10)
        guard case .complete = request(head, limits: exact).0 else {
            Issue.record("a head of exactly maxHeadBytes was refused")
            return
        }
    }

    @Test func moreFieldsThanTheLimitIsInvalid() {
        let limits = HTTP1HeadParser.Limits(maxHeadBytes: 4096, maxFields: 3)
        let three = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
        guard case .complete = request(three, limits: limits).0 else {
            Issue.record("three fields refused with maxFields 3")
            return
        }
        guard
            case .invalid(let error) = request("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", limits: limits)
                .0
        else {
            Issue.record("four fields accepted with maxFields 3")
            return
        }
        #expect(error.code == .tooManyFields && error.isTooLarge)
    }

    @Test func errorsNameTheirReason() {
        let cases: [(String, HTTP1HeadError.Code)] = [
            ("GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", .obsoleteLineFolding),
            ("GET / HTTP/1.1\r\nX-Space : a\r\n\r\n", .whitespaceBeforeColon),
            ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", .bareCR),
            ("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n", .invalidFieldValue),
            ("GET / HTTP/1.1\nX: a\r\n\r\n", .bareLF),
            ("FOO / HTTP/1.1\r\n\r\n", .unknownMethod),
            ("GET / http/1.1\r\n\r\n", .invalidVersion),
            ("GET / HTTP/2.0\r\n\r\n", .unsupportedVersion),
            ("GET /\r\n\r\n", .invalidTarget),
            ("GET / HTTP/1.1 \r\n\r\n", .invalidVersion),
        ]
        for (head, code) in cases {
            guard case .invalid(let error) = request(head).0 else {
                Issue.record("accepted: \(head.debugDescription)")
                continue
            }
            #expect(error.code == code, "\(head.debugDescription)")
            #expect(!error.isTooLarge && error.reason.utf8CodeUnitCount > 0)
        }
    }

    @Test func byteBufferEntryParsesFromTheReaderIndex() throws {
        var buffer = ByteBuffer(string: "xxGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer.moveReaderIndex(forwardBy: 2)
        guard case .complete(let head, let length) = HTTP1HeadParser.parseRequest(buffer) else {
            throw TestFailure("not complete")
        }
        #expect(length == buffer.readableBytes && head.method == 0..<3)
        let response = ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n")
        guard case .complete(let parsed, _) = HTTP1HeadParser.parseResponse(response) else {
            throw TestFailure("response not complete")
        }
        #expect(parsed.status == 200)
    }
}
