import NIOCore
import NIOHTTP1

/// A client's request head as the bytes it sent and their offsets (`HTTP1HeadParser`): what the
/// upstream request is written from, field by field, without a `String` per header.
struct RawRequestHead {
    /// Exactly the head's bytes (empty lines before the request line included).
    let bytes: ByteBuffer
    let head: HTTP1Head
}

extension RequestRules {
    /// `writeUpstreamRequest` from the client's own bytes: the same request, byte for byte (the
    /// agreement test checks it), with each kept field's name and value copied from where the client
    /// sent them. Used for every HTTP/1 request whose head Ferry did not change (an absolute-form
    /// target sets Host: that one goes through `writeUpstreamRequest`).
    static func writeUpstreamRequest(
        raw: RawRequestHead, method: HTTPMethod, facts: RequestHeadFacts, uri: String, clientAddress: String?,
        tls: Bool, into buffer: inout ByteBuffer
    ) -> UpstreamBodyFraming {
        buffer.writeString(method.rawValue)
        buffer.writeStaticString(" ")
        buffer.writeString(uri)
        buffer.writeStaticString(" HTTP/1.1\r\n")
        var host: Range<Int>?
        var forwardedFor: [Range<Int>] = []
        raw.bytes.withUnsafeReadableBytes { bytes in
            for field in raw.head.fields {
                if HeadBytes.isHopByHop(field, of: raw.head, in: bytes, listing: facts.listing) { continue }
                if HTTP1Head.name(of: field, equals: "x-forwarded-proto", in: bytes)
                    || HTTP1Head.name(of: field, equals: "x-forwarded-host", in: bytes)
                    || HTTP1Head.name(of: field, equals: "forwarded", in: bytes)
                    || HTTP1Head.name(of: field, equals: "content-length", in: bytes)
                    || HTTP1Head.name(of: field, equals: "transfer-encoding", in: bytes)
                {
                    continue
                }
                if HTTP1Head.name(of: field, equals: "x-forwarded-for", in: bytes) {
                    forwardedFor.append(field.value)
                    continue
                }
                // Answered by Ferry (`Exchange.startHTTP`); the body follows the head without waiting.
                if facts.expectsContinue && HTTP1Head.name(of: field, equals: "expect", in: bytes) { continue }
                if host == nil && HTTP1Head.name(of: field, equals: "host", in: bytes) { host = field.value }
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.name]))
                buffer.writeStaticString(": ")
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
                buffer.writeStaticString("\r\n")
            }
            if !forwardedFor.isEmpty || clientAddress != nil {
                buffer.writeStaticString("X-Forwarded-For: ")
                for (index, value) in forwardedFor.enumerated() {
                    if index > 0 { buffer.writeStaticString(", ") }
                    buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[value]))
                }
                if let clientAddress {
                    if !forwardedFor.isEmpty { buffer.writeStaticString(", ") }
                    buffer.writeString(clientAddress)
                }
                buffer.writeStaticString("\r\n")
            }
            buffer.writeStaticString(tls ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n")
            if let host {
                buffer.writeStaticString("X-Forwarded-Host: ")
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[host]))
                buffer.writeStaticString("\r\n")
            }
        }
        let hostValue = host.map { range in
            raw.bytes.getString(at: raw.bytes.readerIndex + range.lowerBound, length: range.count)!
        }
        buffer.writeStaticString("Forwarded: ")
        ForwardedValue(clientAddress: clientAddress, proto: tls ? "https" : "http", host: hostValue)
            .forEachPiece { buffer.writeString($0) }
        buffer.writeStaticString("\r\n")
        return writeUpstreamFraming(method: method, facts: facts, into: &buffer)
    }

    /// The end of an upstream request head: Ferry's own framing line (see `writeUpstreamRequest`)
    /// and the empty line.
    static func writeUpstreamFraming(
        method: HTTPMethod, facts: RequestHeadFacts, into buffer: inout ByteBuffer
    ) -> UpstreamBodyFraming {
        if facts.encodings > 0 {
            buffer.writeStaticString("Transfer-Encoding: chunked\r\n\r\n")
            return .chunked
        }
        if let length = facts.length {
            buffer.writeStaticString("Content-Length: ")
            buffer.writeSubstring(length)
            buffer.writeStaticString("\r\n")
        } else if method == .POST || method == .PUT || method == .PATCH {
            buffer.writeStaticString("Content-Length: 0\r\n")
        }
        buffer.writeStaticString("\r\n")
        return .asIs
    }
}

extension HeadBytes {
    /// Whether `field` is hop-by-hop: one of RFC 9110's (`hopByHop`), `close` when `Connection`
    /// lists it, or any other name a `Connection` field of `head` lists.
    static func isHopByHop(
        _ field: HTTP1Head.Field, of head: HTTP1Head, in raw: UnsafeRawBufferPointer,
        listing: RequestRules.ConnectionListing
    ) -> Bool {
        for name in hopByHop where HTTP1Head.name(of: field, equals: name, in: raw) { return true }
        if listing.listsClose && HTTP1Head.name(of: field, equals: "close", in: raw) { return true }
        guard listing.listsOthers else { return false }
        var listed = false
        for connection in head.fields where HTTP1Head.name(of: connection, equals: "connection", in: raw) {
            forEachElement(raw, connection.value) { element in
                listed = equalsIgnoringCase(raw, element, field.name)
                return !listed
            }
            if listed { return true }
        }
        return false
    }
}
