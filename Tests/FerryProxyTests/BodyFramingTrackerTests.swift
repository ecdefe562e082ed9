import Testing

@testable import FerryProxy

@Suite struct BodyFramingTrackerTests {
    /// What feeding a tracker some pieces of a body (as `UpstreamHTTPHandler` does) produced.
    struct Fed: Equatable {
        enum Verdict: Equatable {
            /// More bytes are needed.
            case incomplete
            /// The body ended after `consumed` bytes of the whole input.
            case ended(consumed: Int)
            case refused(BodyFramingTracker.Error.Code)
        }
        var verdict: Verdict
        /// The payload bytes the `data` ranges named, in order.
        var payload: [UInt8] = []
        /// Each step's bytes up to its `relayEnd`, concatenated: what a relay keeping the framing sends.
        var relayed: [UInt8] = []
        /// Each step's `relayEnd`.
        var relayEnds: [Int] = []
    }

    /// Feeds `pieces` one by one, handing the unconsumed bytes of a step in again with the next
    /// piece, as the handler does; checks the step invariants on the way.
    static func feed(_ framing: BodyFramingTracker.Framing, _ pieces: [[UInt8]]) -> Fed {
        var tracker = BodyFramingTracker(framing)
        var fed = Fed(verdict: .incomplete)
        var carried: [UInt8] = []
        // Offset in the whole input of `carried`'s first byte.
        var base = 0
        for piece in pieces {
            let input = carried + piece
            var ranges: [Range<Int>] = []
            let result = input.withUnsafeBytes { raw in
                Result { () throws(BodyFramingTracker.Error) in try tracker.consume(raw) { ranges.append($0) } }
            }
            let step: BodyFramingTracker.Step
            switch result {
            case .success(let taken): step = taken
            case .failure(let error):
                fed.verdict = .refused(error.code)
                return fed
            }
            precondition(step.consumed >= 0 && step.consumed <= input.count, "consumed beyond the input")
            precondition(step.relayEnd >= 0 && step.relayEnd <= step.consumed, "relayEnd beyond consumed")
            var last = 0
            for range in ranges {
                precondition(!range.isEmpty && range.lowerBound >= last && range.upperBound <= step.consumed, "range")
                last = range.upperBound
                fed.payload += input[range]
            }
            fed.relayed += input[..<step.relayEnd]
            fed.relayEnds.append(step.relayEnd)
            if step.ended {
                fed.verdict = .ended(consumed: base + step.consumed)
                return fed
            }
            carried = Array(input[step.consumed...])
            base += step.consumed
        }
        return fed
    }

    static func feed(_ framing: BodyFramingTracker.Framing, _ text: String) -> Fed {
        feed(framing, [Array(text.utf8)])
    }

    static func chunked(_ text: String) -> Fed { feed(.chunked, text) }

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    // MARK: - Content-Length, none, until close

    @Test func contentLengthCountsDownAcrossInputsAndStopsAtTheEnd() {
        let fed = Self.feed(.length(10), [Self.bytes("hell"), Self.bytes("o worl"), Self.bytes("dHTTP/1.1")])
        #expect(fed.verdict == .ended(consumed: 10))
        #expect(fed.payload == Self.bytes("hello worl"))
        #expect(fed.relayed == Self.bytes("hello worl"))
    }

    @Test func contentLengthZeroIsCompleteAtOnce() {
        let tracker = BodyFramingTracker(.length(0))
        #expect(tracker.isComplete)
        #expect(Self.feed(.length(0), "x").verdict == .ended(consumed: 0))
    }

    @Test func noBodyConsumesNothing() {
        #expect(BodyFramingTracker(.none).isComplete)
        #expect(Self.feed(.none, "HTTP/1.1 200 OK\r\n").verdict == .ended(consumed: 0))
    }

    @Test func untilCloseTakesEverythingAndNeverEnds() {
        let fed = Self.feed(.untilClose, [Self.bytes("abc"), [], Self.bytes("0\r\n\r\n")])
        #expect(fed.verdict == .incomplete)
        #expect(fed.payload == Self.bytes("abc0\r\n\r\n"))
        #expect(fed.relayed == fed.payload)
        #expect(!BodyFramingTracker(.untilClose).isComplete)
    }

    // MARK: - Chunked

    @Test func chunkedPayloadAndEnd() {
        let body = "5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"
        let fed = Self.chunked(body + "HTTP/1.1 200 OK\r\n")
        #expect(fed.verdict == .ended(consumed: body.utf8.count))
        #expect(fed.payload == Self.bytes("helloabcdefghijklmnopqrstuvwxyz"))
        #expect(fed.relayed == Self.bytes("5\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n"))
    }

    @Test func chunkSizeIsHexInEitherCaseWithLeadingZeros() {
        let payload = [UInt8](repeating: 0x78, count: 0xAB)
        for size in ["ab", "AB", "aB", "00ab", "000000000000ab"] {
            let fed = Self.feed(.chunked, [Self.bytes("\(size)\r\n") + payload + Self.bytes("\r\n0\r\n\r\n")])
            #expect(fed.verdict == .ended(consumed: size.utf8.count + 2 + 0xAB + 7), "\(size)")
            #expect(fed.payload == payload, "\(size)")
        }
    }

    @Test(arguments: [
        "5;a=b\r\nhello\r\n0\r\n\r\n",
        "5;a\r\nhello\r\n0\r\n\r\n",
        "5;a;b=c;d\r\nhello\r\n0\r\n\r\n",
        "5;a=\"x y\"\r\nhello\r\n0\r\n\r\n",
        "5;a=\"\"\r\nhello\r\n0\r\n\r\n",
        "5;a=\"q\\\"uo\\\\te\";b=c\r\nhello\r\n0\r\n\r\n",
        "5;a=\"\t\u{80}\u{ff}\"\r\nhello\r\n0\r\n\r\n",
        "5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0;last=yes\r\n\r\n",
    ])
    func validChunkExtensionsAreSkipped(body: String) {
        let bytes = Array(body.utf8)
        // Latin-1 for the obs-text case: one byte per scalar.
        let raw =
            body.unicodeScalars.allSatisfy { $0.value < 0x80 } ? bytes : body.unicodeScalars.map { UInt8($0.value) }
        let fed = Self.feed(.chunked, [raw])
        #expect(fed.verdict == .ended(consumed: raw.count), "\(body.debugDescription)")
        #expect(fed.payload == Self.bytes("hello"), "\(body.debugDescription)")
    }

    @Test(arguments: [
        // Whitespace anywhere in the size line: llhttp (and NIO's decoder) refuse it; the line is
        // relayed as it is, so a client's parser would refuse it too.
        ("5 \r\nhello\r\n0\r\n\r\n", BodyFramingTracker.Error.Code.invalidChunkSize),
        ("5\t\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5 ;a=b\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5; a=b\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a =b\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a= b\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a=b \r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        (" 5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5;\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        (";a\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5;=b\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a=\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a=b\"c\"\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a=\"b\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a=\"b\u{7f}\"\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a=\"b\\\u{1}\"\r\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("5;a=b\rc\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5;a\rb\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5;a=b\nhello\r\n0\r\n\r\n", .invalidChunkExtension),
        ("0x5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("-5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("+5\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("g\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5\rhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5\r\r\nhello\r\n0\r\n\r\n", .invalidChunkSize),
        ("5\r\nhello\n0\r\n\r\n", .missingCRLFAfterChunk),
        ("5\r\nhello0\r\n\r\n", .missingCRLFAfterChunk),
        ("5\r\nhello\rx0\r\n\r\n", .missingCRLFAfterChunk),
        ("5\r\nhello!\r\n0\r\n\r\n", .missingCRLFAfterChunk),
        ("1000000000000000\r\n", .chunkSizeTooLarge),
        ("0000000000000005\r\nhello\r\n0\r\n\r\n", .chunkSizeTooLarge),
        ("ffffffffffffffffff\r\n", .chunkSizeTooLarge),
    ])
    func invalidChunkFramingIsRefused(body: String, code: BodyFramingTracker.Error.Code) {
        #expect(Self.chunked(body).verdict == .refused(code), "\(body.debugDescription)")
    }

    @Test func largestSizeWithFifteenDigitsIsTakenAsACountdown() {
        let fed = Self.chunked("fffffffffffffff\r\nabc")
        #expect(fed.verdict == .incomplete)
        #expect(fed.payload == Self.bytes("abc"))
    }

    @Test func sizeLineLongerThanTheLimitIsRefusedEvenWhenCut() {
        let long = "5;a=\"" + String(repeating: "x", count: BodyFramingTracker.maxSizeLineBytes) + "\""
        #expect(Self.chunked(long + "\r\nhello\r\n0\r\n\r\n").verdict == .refused(.chunkSizeLineTooLong))
        #expect(Self.chunked(long).verdict == .refused(.chunkSizeLineTooLong))
        // Just within the limit (the line up to CR, LF included, counts).
        let fits = "5;a=" + String(repeating: "x", count: BodyFramingTracker.maxSizeLineBytes - 6)
        #expect(Self.chunked(fits + "\r\nhello\r\n0\r\n\r\n").verdict != .refused(.chunkSizeLineTooLong))
    }

    // MARK: - Trailers

    @Test(arguments: [
        "0\r\n\r\n",
        "0\r\nX-Checksum: abc\r\n\r\n",
        "0\r\nA: 1\r\nB:2\r\nEmpty:\r\nTab:\tx\t\r\n\r\n",
        "0\r\nObs-Text: caf\u{e9}\r\n\r\n",
    ])
    func validTrailersAreReadAndNotRelayed(trailer: String) {
        let body = Self.bytes("3\r\nabc\r\n") + trailer.unicodeScalars.map { UInt8($0.value) }
        let fed = Self.feed(.chunked, [body + Self.bytes("NEXT")])
        #expect(fed.verdict == .ended(consumed: body.count), "\(trailer.debugDescription)")
        #expect(fed.payload == Self.bytes("abc"))
        #expect(fed.relayed == Self.bytes("3\r\nabc\r\n"))
    }

    @Test(arguments: [
        "0\r\n: x\r\n\r\n",
        "0\r\n x: y\r\n\r\n",
        "0\r\nA: 1\r\n\tfolded\r\n\r\n",
        "0\r\nA: 1\n\r\n",
        "0\r\nA: 1\r\n\n",
        "0\r\n\rx",
        "0\r\nA: \u{1}\r\n\r\n",
        "0\r\nA: \u{7f}\r\n\r\n",
        "0\r\nA: 1\rB\r\n\r\n",
        "0\r\nNoColon\r\n\r\n",
        "0\r\nA : 1\r\n\r\n",
        "0\r\nA\t: 1\r\n\r\n",
        "0\r\nA B: 1\r\n\r\n",
        "0\r\nA,B: 1\r\n\r\n",
        "0\r\nA\n",
    ])
    func invalidTrailersAreRefused(trailer: String) {
        #expect(
            Self.chunked("3\r\nabc\r\n" + trailer).verdict == .refused(.invalidTrailer), "\(trailer.debugDescription)")
    }

    @Test func trailersBeyondTheLimitAreRefused() {
        let line = "X-Pad: " + String(repeating: "p", count: 100) + "\r\n"
        let many = String(repeating: line, count: BodyFramingTracker.maxTrailerBytes / line.utf8.count + 1)
        #expect(Self.chunked("0\r\n" + many + "\r\n").verdict == .refused(.trailerTooLarge))
        // Split in small pieces: the count carries across inputs.
        let pieces = Array(("0\r\n" + many + "\r\n").utf8).chunks(of: 100)
        #expect(Self.feed(.chunked, pieces).verdict == .refused(.trailerTooLarge))
        let fits = String(repeating: line, count: (BodyFramingTracker.maxTrailerBytes - 2) / line.utf8.count)
        #expect(Self.chunked("0\r\n" + fits + "\r\n").verdict == .ended(consumed: 3 + fits.utf8.count + 2))
    }

    // MARK: - relayEnd

    @Test func relayEndStopsBeforeALastChunkInTheSameInputAsData() {
        let fed = Self.chunked("5\r\nhello\r\n0;x=y\r\nT: 1\r\n\r\n")
        #expect(fed.relayEnds == [10])
        #expect(fed.relayed == Self.bytes("5\r\nhello\r\n"))
    }

    @Test func relayEndIsZeroForALastChunkInItsOwnInput() {
        let fed = Self.feed(.chunked, [Self.bytes("5\r\nhello\r\n"), Self.bytes("0\r\n\r\n")])
        #expect(fed.relayEnds == [10, 0])
        #expect(fed.relayed == Self.bytes("5\r\nhello\r\n"))
        #expect(fed.verdict == .ended(consumed: 15))
    }

    @Test func relayEndWithALastChunkSplitAcrossInputs() {
        // The cut size line "0" is not consumed, so not relayed; the trailers that follow it in
        // later inputs are never relayed either.
        let fed = Self.feed(
            .chunked, [Self.bytes("5\r\nhello\r\n0"), Self.bytes("\r\nT: "), Self.bytes("1\r\n"), Self.bytes("\r\n")])
        #expect(fed.relayEnds == [10, 0, 0, 0])
        #expect(fed.relayed == Self.bytes("5\r\nhello\r\n"))
        #expect(fed.payload == Self.bytes("hello"))
        #expect(fed.verdict == .ended(consumed: 21))
    }

    @Test func relayEndEqualsConsumedBeforeTheLastChunk() {
        let fed = Self.feed(.chunked, [Self.bytes("5\r\nhel"), Self.bytes("lo\r"), Self.bytes("\n3\r\nabc\r\n")])
        #expect(fed.relayEnds == [6, 3, 9])
        #expect(fed.relayed == Self.bytes("5\r\nhello\r\n3\r\nabc\r\n"))
        #expect(fed.verdict == .incomplete)
    }

    // MARK: - Splits

    static let splitBodies = [
        "5\r\nhello\r\n1a;ext=\"quoted value\";b\r\nabcdefghijklmnopqrstuvwxyz\r\n0;z=1\r\nT: v\r\nU: w\r\n\r\n",
        "A\r\n0123456789\r\n00000001\r\n!\r\n0\r\n\r\n",
        "1\r\nx\r\n0\r\n\r\n",
    ]

    @Test(arguments: splitBodies)
    func everySplitPointGivesTheSamePayloadAndEnd(body: String) {
        let bytes = Self.bytes(body)
        let whole = Self.feed(.chunked, [bytes])
        #expect(whole.verdict == .ended(consumed: bytes.count))
        for cut in 0...bytes.count {
            let split = Self.feed(.chunked, [Array(bytes[..<cut]), Array(bytes[cut...])])
            #expect(split.verdict == whole.verdict, "cut at \(cut)")
            #expect(split.payload == whole.payload, "cut at \(cut)")
            #expect(split.relayed == whole.relayed, "cut at \(cut)")
        }
        // One byte at a time.
        let bytewise = Self.feed(.chunked, bytes.map { [$0] })
        #expect(bytewise.verdict == whole.verdict)
        #expect(bytewise.payload == whole.payload)
        #expect(bytewise.relayed == whole.relayed)
    }

    @Test(arguments: splitBodies)
    func aCutSizeLineIsNeverConsumed(body: String) {
        let bytes = Self.bytes(body)
        for cut in 0...bytes.count {
            var tracker = BodyFramingTracker(.chunked)
            let step = try? Array(bytes[..<cut]).withUnsafeBytes { raw throws(BodyFramingTracker.Error) in
                try tracker.consume(raw)
            }
            guard let step else {
                Issue.record("prefix \(cut) refused")
                continue
            }
            // All a prefix leaves unconsumed is the start of one size line: no line end, no data.
            let rest = bytes[step.consumed..<cut]
            #expect(!rest.contains(0x0A), "prefix \(cut) left a whole line")
            #expect(rest.isEmpty || rest.first != 0x0D, "prefix \(cut) left a CR")
        }
    }

    @Test func sizeLineHelperReportsIncompleteForEveryPrefix() throws {
        let line = Self.bytes("1a;ext=\"q\\\"v\";b=c\r\n")
        for cut in 0..<line.count {
            let result = try Array(line[..<cut]).withUnsafeBytes { raw throws(BodyFramingTracker.Error) in
                try BodyFramingTracker.sizeLine(raw, from: 0)
            }
            #expect(result == nil, "prefix \(cut)")
        }
        let whole = try line.withUnsafeBytes { raw throws(BodyFramingTracker.Error) in
            try BodyFramingTracker.sizeLine(raw, from: 0)
        }
        #expect(whole?.0 == 0x1a && whole?.1 == line.count)
    }
}

extension Array {
    /// The array cut into consecutive pieces of at most `size` elements.
    func chunks(of size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}
