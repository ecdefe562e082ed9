import NIOCore

/// A backend's response head as its bytes and their offsets (`HTTP1HeadParser`), with what one
/// pass over its fields says about its framing and its hop. The front end rewrites it for the
/// client by copying the field lines it keeps (`writeDownstreamFields`); no header becomes a
/// `String`.
struct UpstreamResponseHead {
    /// Exactly the head's bytes, status line to the final CRLF.
    let bytes: ByteBuffer
    let head: HTTP1Head
    var status: Int { head.status }
    private(set) var contentLength: Int?
    /// The last Transfer-Encoding element is `chunked`.
    private(set) var chunked = false
    private(set) var hasTransferEncoding = false
    private(set) var listing = RequestRules.ConnectionListing()
    /// `Connection: keep-alive` was listed (what an HTTP/1.0 backend must say to keep the connection).
    private(set) var listsKeepAlive = false

    struct FramingError: Error {
        var reason: StaticString
    }

    /// Reads the fields that matter for framing and the hop; refuses a Content-Length that is not a
    /// number or that differs between fields, or one with a Transfer-Encoding (RFC 9112 §6.3).
    init(bytes: ByteBuffer, head: HTTP1Head) throws(FramingError) {
        self.bytes = bytes
        self.head = head
        var contentLength: Int?
        var chunked = false
        var hasTransferEncoding = false
        var listing = RequestRules.ConnectionListing()
        var listsKeepAlive = false
        var failure: StaticString?
        bytes.withUnsafeReadableBytes { raw in
            for field in head.fields {
                if HTTP1Head.name(of: field, equals: "content-length", in: raw) {
                    HeadBytes.forEachElement(raw, field.value) { element in
                        guard let length = HeadBytes.decimal(raw, element) else {
                            failure = "invalid Content-Length in the backend's response"
                            return false
                        }
                        if let contentLength, contentLength != length {
                            failure = "differing Content-Length values in the backend's response"
                            return false
                        }
                        contentLength = length
                        return true
                    }
                } else if HTTP1Head.name(of: field, equals: "transfer-encoding", in: raw) {
                    hasTransferEncoding = true
                    HeadBytes.forEachElement(raw, field.value) { element in
                        chunked = HeadBytes.equals(raw, element, "chunked")
                        return true
                    }
                } else if HTTP1Head.name(of: field, equals: "connection", in: raw) {
                    HeadBytes.forEachElement(raw, field.value) { element in
                        if HeadBytes.equals(raw, element, "keep-alive") { listsKeepAlive = true }
                        listing.add(element: raw, element)
                        return true
                    }
                }
            }
        }
        if let failure { throw FramingError(reason: failure) }
        // RFC 9112 §6.3 lets an intermediary forward such a message without its Content-Length;
        // it "ought to be handled as an error" (a sign of response splitting), as llhttp does.
        if hasTransferEncoding && contentLength != nil {
            throw FramingError(reason: "both Content-Length and Transfer-Encoding in the backend's response")
        }
        self.contentLength = contentLength
        self.chunked = chunked
        self.hasTransferEncoding = hasTransferEncoding
        self.listing = listing
        self.listsKeepAlive = listsKeepAlive
    }

    /// Whether the backend lets the connection carry another request (RFC 9112 §9.3).
    var keepAlive: Bool {
        if listing.listsClose { return false }
        if head.versionMajor == 1 && head.versionMinor == 0 { return listsKeepAlive }
        return true
    }

    /// Whether the response may have a body at all, given the request's method.
    func mayHaveBody(requestIsHEAD: Bool) -> Bool {
        !(requestIsHEAD || status == 204 || status == 304 || status < 200)
    }

    /// How the body is delimited (RFC 9112 §6.3): none for HEAD, 1xx, 204, 304; chunked when
    /// Transfer-Encoding ends in chunked; until close for another Transfer-Encoding or no length.
    func framing(requestIsHEAD: Bool) -> BodyFramingTracker.Framing {
        guard mayHaveBody(requestIsHEAD: requestIsHEAD) else { return .none }
        if hasTransferEncoding { return chunked ? .chunked : .untilClose }
        if let contentLength { return .length(contentLength) }
        return .untilClose
    }

    /// Whether `field` goes to the client: not hop-by-hop (RFC 9110 §7.6.1, or listed in
    /// `Connection`), not Transfer-Encoding (Ferry frames the body itself), and not Content-Length
    /// when `dropContentLength`.
    func keeps(_ field: HTTP1Head.Field, in raw: UnsafeRawBufferPointer, dropContentLength: Bool) -> Bool {
        if HTTP1Head.name(of: field, equals: "transfer-encoding", in: raw) { return false }
        if dropContentLength && HTTP1Head.name(of: field, equals: "content-length", in: raw) { return false }
        return !HeadBytes.isHopByHop(field, of: head, in: raw, listing: listing)
    }

    /// Copies the field lines the client gets (see `keeps`) into `out`, as the backend wrote them.
    func writeDownstreamFields(dropContentLength: Bool, into out: inout ByteBuffer) {
        bytes.withUnsafeReadableBytes { raw in
            for field in head.fields where keeps(field, in: raw, dropContentLength: dropContentLength) {
                out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[field.line]))
            }
        }
    }

    /// The reason phrase's bytes.
    func writeReason(into out: inout ByteBuffer) {
        _ = bytes.withUnsafeReadableBytes { raw in
            out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[head.reason]))
        }
    }
}

/// Byte-level helpers over a head's bytes: list elements, names, numbers (no `String`).
enum HeadBytes {
    /// `RequestRules.hopByHop`, as static bytes.
    static let hopByHop: [StaticString] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authenticate",
        "proxy-authorization",
    ]

    /// Calls `body` with each element of the comma-separated list in `range` (RFC 9110 §5.6.1):
    /// empty elements skipped, SP and HTAB trimmed; stops when `body` returns false.
    static func forEachElement(
        _ raw: UnsafeRawBufferPointer, _ range: Range<Int>, _ body: (Range<Int>) -> Bool
    ) {
        var start = range.lowerBound
        var index = start
        while true {
            let atEnd = index == range.upperBound
            if atEnd || raw[index] == UInt8(ascii: ",") {
                var first = start
                var last = index
                while first < last, raw[first] == 0x20 || raw[first] == 0x09 { first += 1 }
                while last > first, raw[last - 1] == 0x20 || raw[last - 1] == 0x09 { last -= 1 }
                if first < last, !body(first..<last) { return }
                if atEnd { return }
                start = index + 1
            }
            index += 1
        }
    }

    /// Whether the bytes in `range` equal `lowercase` ignoring ASCII case.
    static func equals(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: StaticString) -> Bool {
        HTTP1Head.name(
            of: HTTP1Head.Field(name: range, value: range, line: range),
            equals: UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount),
            in: raw)
    }

    /// Whether two ranges of `raw` hold the same bytes ignoring ASCII case.
    static func equalsIgnoringCase(_ raw: UnsafeRawBufferPointer, _ a: Range<Int>, _ b: Range<Int>) -> Bool {
        guard a.count == b.count else { return false }
        for offset in 0..<a.count {
            let x = raw[a.lowerBound + offset]
            let y = raw[b.lowerBound + offset]
            if x == y { continue }
            let folded = x | 0x20
            guard folded == y | 0x20, folded >= UInt8(ascii: "a"), folded <= UInt8(ascii: "z") else { return false }
        }
        return true
    }

    /// A non-negative decimal number made of digits only, or nil (no sign, no space, no overflow).
    static func decimal(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.count <= 18 else { return nil }
        var value = 0
        for index in range {
            let byte = raw[index]
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}
