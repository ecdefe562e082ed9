import NIOCore
import NIOHTTP1

/// Writes HTTP/1.1 responses to the client straight into `ByteBuffer`s.
///
/// Ferry used NIO's `HTTPResponseEncoder`, which needs a new `HTTPResponseHead` (its own headers
/// array, copied again when the encoder fixes the framing headers) per response and one trip
/// through the pipeline per part. The proxied head is written here from the backend's headers as
/// they are filtered, and a small body joins the head in one buffer (see docs/decisions.md).
///
/// Framing follows RFC 9112 §6 as NIO's encoder does: no body for 1xx, 204 and 304 (their
/// Content-Length and Transfer-Encoding are dropped); the Content-Length when there is one;
/// otherwise chunked, or, for an HTTP/1.0 client, which cannot read chunks, the end of the
/// connection. The body of a response to HEAD is never written; its framing headers say what a GET
/// would have got.
struct ResponseFramer {
    enum Framing: Equatable {
        /// The status has no body.
        case none
        case contentLength
        case chunked
        /// Delimited by closing the connection (HTTP/1.0 client, length unknown).
        case close
    }

    private(set) var framing = Framing.none
    private(set) var suppressBody = false

    /// Decides the framing and writes the status line. Returns true when the connection must close
    /// after this response (`.close` framing).
    mutating func start(
        status: HTTPResponseStatus, hasContentLength: Bool, method: HTTPMethod, version: HTTPVersion,
        into buffer: inout ByteBuffer
    ) -> Bool {
        start(
            code: Int(status.code), hasContentLength: hasContentLength, method: method, version: version, into: &buffer
        ) {
            $0.writeString(status.reasonPhrase)
        }
    }

    /// `start` for a status given as a code, with its reason phrase written by `reason`.
    mutating func start(
        code: Int, hasContentLength: Bool, method: HTTPMethod, version: HTTPVersion, into buffer: inout ByteBuffer,
        reason: (inout ByteBuffer) -> Void
    ) -> Bool {
        suppressBody = method == .HEAD
        if code < 200 || code == 204 || code == 304 {
            framing = .none
        } else if hasContentLength {
            framing = .contentLength
        } else if version.major > 1 || (version.major == 1 && version.minor >= 1) {
            framing = .chunked
        } else {
            framing = .close
        }
        buffer.writeStaticString("HTTP/1.1 ")
        buffer.writeString(String(code))
        buffer.writeStaticString(" ")
        reason(&buffer)
        buffer.writeStaticString("\r\n")
        return framing == .close
    }

    /// Whether a header of the response being framed must be left out: its Content-Length when the
    /// status has no body. (Transfer-Encoding is always left out; Ferry writes its own.)
    func dropsFramingHeader(_ name: String) -> Bool {
        framing == .none && RequestRules.nameEquals(name, "content-length")
    }

    static func writeHeader(_ name: String, _ value: String, into buffer: inout ByteBuffer) {
        buffer.writeString(name)
        buffer.writeStaticString(": ")
        buffer.writeString(value)
        buffer.writeStaticString("\r\n")
    }

    /// Ends the head: Transfer-Encoding when chunked, Ferry's Connection header, the blank line.
    func finishHead(keepAlive: Bool, into buffer: inout ByteBuffer) {
        if framing == .chunked { buffer.writeStaticString("Transfer-Encoding: chunked\r\n") }
        buffer.writeStaticString(
            keepAlive && framing != .close ? "Connection: keep-alive\r\n" : "Connection: close\r\n")
        buffer.writeStaticString("\r\n")
    }

    /// Whether body bytes go out at all.
    var writesBody: Bool { !suppressBody && framing != .none }

    /// A chunk's size line (before its bytes; `\r\n` follows them).
    static func writeChunkHeader(size: Int, into buffer: inout ByteBuffer) {
        buffer.writeString(String(size, radix: 16))
        buffer.writeStaticString("\r\n")
    }

    /// What ends the body on the wire: the last chunk when chunked, else nothing.
    var terminator: StaticString? { writesBody && framing == .chunked ? "0\r\n\r\n" : nil }
}
