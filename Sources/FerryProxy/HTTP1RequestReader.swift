import NIOCore
import NIOHTTP1

/// Reads HTTP/1 requests off a client connection's bytes: heads parsed in place by
/// `HTTP1HeadParser` (once per head: the parser runs when the head's empty line is there, not on
/// every read), bodies framed by a `BodyFramingTracker` and handed on as slices of the bytes read.
///
/// It replaces NIO's `HTTPRequestDecoder` and the pipeline hop in front of the front end. Bytes
/// that follow a request the front end cannot take yet (pipelining) stay buffered here until it
/// asks for the next request; after a WebSocket upgrade request nothing more is parsed, and what
/// follows is handed to the tunnel as it is (`takeRemaining`).
struct HTTP1RequestReader {
    enum Event {
        /// More bytes are needed.
        case needMore
        /// A request head, and how its body is framed (`.none`: the request ends with its head).
        case head(ExchangeRequest, body: BodyFramingTracker.Framing)
        /// Part of the current request's body, as a slice of the bytes read.
        case body(ByteBuffer)
        /// The current request's body ended.
        case end
        /// The bytes are not HTTP/1 (or too large): answer and close.
        case invalid(HTTPResponseStatus, String)
    }

    private enum Position {
        /// Before a request head; `searchedUpTo`: how far the end-of-head search got.
        case head(searchedUpTo: Int)
        case body(BodyFramingTracker)
        /// The body's last bytes were handed on; `.end` comes next.
        case bodyEnded
        /// After a WebSocket upgrade request: nothing more is read as HTTP.
        case upgraded
        /// After an invalid request: nothing more is read.
        case failed
    }

    /// The parser's limits: the head size is NIO's decoder's (80 KiB), the field count generous,
    /// so that `RequestRules` (the configured limits) decides and says why.
    static let limits = HTTP1HeadParser.Limits(maxHeadBytes: 80 * 1024, maxFields: 10_000)

    private var buffer: ByteBuffer?
    private var position = Position.head(searchedUpTo: 0)

    /// Takes bytes read from the client.
    mutating func append(_ bytes: ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        if var buffered = buffer, buffered.readableBytes > 0 {
            var bytes = bytes
            buffered.writeBuffer(&bytes)
            buffer = buffered
        } else {
            buffer = bytes
        }
    }

    /// Between requests (the front end decides when it takes the next head).
    var isAtHead: Bool {
        if case .head = position { true } else { false }
    }

    /// Whether bytes of a request not handed on whole yet are held: a head not complete, or a body
    /// not ended (a FIN now cuts that request short).
    var isMidRequest: Bool {
        switch position {
        case .head: (buffer?.readableBytes ?? 0) > 0 && !holdsCompleteHead
        case .body, .bodyEnded: true
        case .upgraded, .failed: false
        }
    }

    /// Whether a whole request head is buffered (a pipelined request waits).
    var holdsCompleteHead: Bool {
        guard case .head = position, let buffer, buffer.readableBytes >= 4 else { return false }
        return buffer.withUnsafeReadableBytes { HTTP1HeadParser.endOfHead($0, from: 0) } != nil
    }

    /// Whether bytes are buffered at all.
    var hasBufferedBytes: Bool { (buffer?.readableBytes ?? 0) > 0 }

    /// What follows a WebSocket upgrade request (a client's first frames), for the tunnel.
    mutating func takeRemaining() -> ByteBuffer? {
        defer { buffer = nil }
        return buffer.flatMap { $0.readableBytes > 0 ? $0 : nil }
    }

    /// The next event from the bytes buffered so far.
    mutating func next() -> Event {
        if case .bodyEnded = position {
            position = .head(searchedUpTo: 0)
            return .end
        }
        guard var bytes = buffer else { return .needMore }
        buffer = nil
        defer { buffer = bytes.readableBytes > 0 ? bytes : nil }
        switch position {
        case .head(let searchedUpTo):
            return readHead(&bytes, searchedUpTo: searchedUpTo)
        case .body(var tracker):
            var data = 0..<0
            let step: BodyFramingTracker.Step
            do {
                // One slice per call: the tracker stops after the first data range.
                step = try bytes.withUnsafeReadableBytes { raw throws(BodyFramingTracker.Error) in
                    try tracker.consume(raw, stopAfterData: true) { data = $0 }
                }
            } catch {
                position = .failed
                return .invalid(.badRequest, "malformed request body (\(error.code))")
            }
            let slice = data.isEmpty ? nil : bytes.getSlice(at: bytes.readerIndex + data.lowerBound, length: data.count)
            bytes.moveReaderIndex(forwardBy: step.consumed)
            position = step.ended ? .bodyEnded : .body(tracker)
            if let slice { return .body(slice) }
            if step.ended {
                position = .head(searchedUpTo: 0)
                return .end
            }
            return .needMore
        case .bodyEnded, .upgraded, .failed:
            return .needMore
        }
    }

    private mutating func readHead(_ bytes: inout ByteBuffer, searchedUpTo: Int) -> Event {
        var from = searchedUpTo
        while true {
            let found = bytes.withUnsafeReadableBytes { HTTP1HeadParser.endOfHead($0, from: max(0, from - 3)) }
            guard let found else {
                guard bytes.readableBytes <= Self.limits.maxHeadBytes else {
                    position = .failed
                    return .invalid(
                        HTTPResponseStatus(statusCode: 431, reasonPhrase: "Request Header Fields Too Large"),
                        "request head too large")
                }
                position = .head(searchedUpTo: bytes.readableBytes)
                return .needMore
            }
            switch HTTP1HeadParser.parseRequest(bytes, limits: Self.limits) {
            case .incomplete:
                // Empty lines before the request line ended the search early.
                from = found + 4
                continue
            case .invalid(let error):
                position = .failed
                if error.isTooLarge {
                    return .invalid(
                        HTTPResponseStatus(statusCode: 431, reasonPhrase: "Request Header Fields Too Large"),
                        "request head too large")
                }
                return .invalid(.badRequest, "malformed request (\(error.reason))")
            case .complete(let parsed, let headLength):
                let raw = RawRequestHead(bytes: bytes.readSlice(length: headLength)!, head: parsed)
                let facts = RequestRules.RequestHeadFacts(raw: raw)
                let framing = Self.bodyFraming(facts)
                if facts.upgradeListsWebSocket && facts.listing.listsUpgrade {
                    position = .upgraded
                } else if framing == .none {
                    position = .head(searchedUpTo: 0)
                } else {
                    position = .body(BodyFramingTracker(framing))
                }
                return .head(Self.request(raw, facts: facts), body: framing)
            }
        }
    }

    /// How the body is framed (RFC 9112 §6.3): chunked when Transfer-Encoding ends in chunked, else
    /// the Content-Length, else none. What is invalid (both, differing lengths, a length that is
    /// not a number) is refused by `RequestRules` on the facts, with close.
    private static func bodyFraming(_ facts: RequestRules.RequestHeadFacts) -> BodyFramingTracker.Framing {
        if facts.encodings > 0 { return facts.lastEncodingIsChunked ? .chunked : .none }
        guard let length = facts.length, let value = Int(length), value > 0 else { return .none }
        return .length(value)
    }

    /// The exchange's view of the head: method, target and version as values, the fields left as
    /// the client's bytes.
    private static func request(_ raw: RawRequestHead, facts: RequestRules.RequestHeadFacts) -> ExchangeRequest {
        let (method, uri) = raw.bytes.withUnsafeReadableBytes { bytes in
            (
                Self.method(raw.head.method, bytes),
                String(decoding: UnsafeRawBufferPointer(rebasing: bytes[raw.head.target]), as: UTF8.self)
            )
        }
        return ExchangeRequest(
            method: method, uri: uri,
            version: HTTPVersion(major: Int(raw.head.versionMajor), minor: Int(raw.head.versionMinor)),
            fields: .raw(raw), facts: facts)
    }

    private static func method(_ range: Range<Int>, _ raw: UnsafeRawBufferPointer) -> HTTPMethod {
        let bytes = UnsafeRawBufferPointer(rebasing: raw[range])
        func equals(_ name: StaticString) -> Bool {
            bytes.elementsEqual(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        }
        if equals("GET") { return .GET }
        if equals("POST") { return .POST }
        if equals("HEAD") { return .HEAD }
        if equals("PUT") { return .PUT }
        if equals("DELETE") { return .DELETE }
        if equals("OPTIONS") { return .OPTIONS }
        if equals("PATCH") { return .PATCH }
        return HTTPMethod(rawValue: String(decoding: bytes, as: UTF8.self))
    }
}
