import NIOCore

/// Follows WebSocket frame boundaries in one direction of a tunnel, reading headers only (RFC 6455
/// §5.2), so that a close frame can be injected between frames without cutting one, while the relay
/// stays byte-transparent.
struct WebSocketFrameTracker {
    private var header: [UInt8] = []
    private var headerLength = 2
    private var payloadRemaining: UInt64 = 0

    /// True between frames.
    var atBoundary: Bool { header.isEmpty && payloadRemaining == 0 }

    /// Consumes the readable bytes of `buffer`; returns the offsets (from its reader index) just
    /// after each frame that ends within them.
    mutating func consume(_ buffer: ByteBuffer) -> [Int] {
        var boundaries: [Int] = []
        buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            while index < bytes.count {
                if payloadRemaining > 0 {
                    let take = Int(min(payloadRemaining, UInt64(bytes.count - index)))
                    payloadRemaining -= UInt64(take)
                    index += take
                    if payloadRemaining == 0 { boundaries.append(index) }
                    continue
                }
                header.append(bytes[index])
                index += 1
                if header.count == 2 {
                    let length7 = header[1] & 0x7F
                    let masked = header[1] & 0x80 != 0
                    headerLength = 2 + (length7 == 126 ? 2 : length7 == 127 ? 8 : 0) + (masked ? 4 : 0)
                }
                if header.count >= 2 && header.count == headerLength {
                    let length7 = header[1] & 0x7F
                    var length = UInt64(length7)
                    if length7 == 126 {
                        length = UInt64(header[2]) << 8 | UInt64(header[3])
                    } else if length7 == 127 {
                        length = header[2..<10].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    }
                    header.removeAll(keepingCapacity: true)
                    headerLength = 2
                    payloadRemaining = length
                    if length == 0 { boundaries.append(index) }
                }
            }
        }
        return boundaries
    }
}
