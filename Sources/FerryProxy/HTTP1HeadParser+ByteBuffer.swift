import NIOCore

extension HTTP1HeadParser {
    /// Parses a request head at `buffer`'s reader index; offsets count from that index.
    static func parseRequest(_ buffer: ByteBuffer, limits: Limits = Limits()) -> Outcome {
        buffer.withUnsafeReadableBytes { parseRequest($0, limits: limits) }
    }

    /// Parses a response head at `buffer`'s reader index; offsets count from that index.
    static func parseResponse(_ buffer: ByteBuffer, limits: Limits = Limits()) -> Outcome {
        buffer.withUnsafeReadableBytes { parseResponse($0, limits: limits) }
    }
}
