import NIOCore

/// Follows WebSocket frame boundaries in one direction of a tunnel, reading headers only (RFC 6455
/// §5.2), so that a close frame can be injected between frames without cutting one, while the relay
/// stays byte-transparent.
///
/// It runs on every read of every tunnel, so it keeps its state in a few integers (no header
/// buffer) and reports boundaries through a closure (no array per read).
struct WebSocketFrameTracker {
    /// Header bytes seen of the frame being parsed (0 between frames or in a payload).
    private var headerSeen = 0
    private var headerLength = 2
    private var lengthCode: UInt8 = 0
    /// Bytes of extended payload length in the current header (0, 2 or 8).
    private var extendedBytes = 0
    private var extendedLength: UInt64 = 0
    private var payloadRemaining: UInt64 = 0

    /// True between frames.
    var atBoundary: Bool { headerSeen == 0 && payloadRemaining == 0 }

    /// Consumes the readable bytes of `buffer`; returns the offset (from its reader index) just
    /// after the first frame that ends within them, if any.
    mutating func firstBoundary(in buffer: ByteBuffer) -> Int? {
        var first: Int?
        walk(buffer) { offset in
            if first == nil { first = offset }
        }
        return first
    }

    /// Consumes the readable bytes of `buffer`; returns the offsets (from its reader index) just
    /// after each frame that ends within them.
    mutating func consume(_ buffer: ByteBuffer) -> [Int] {
        var boundaries: [Int] = []
        walk(buffer) { boundaries.append($0) }
        return boundaries
    }

    private mutating func walk(_ buffer: ByteBuffer, boundary: (Int) -> Void) {
        buffer.withUnsafeReadableBytes { bytes in
            var index = 0
            while index < bytes.count {
                if payloadRemaining > 0 {
                    let take = Int(min(payloadRemaining, UInt64(bytes.count - index)))
                    payloadRemaining -= UInt64(take)
                    index += take
                    if payloadRemaining == 0 { boundary(index) }
                    continue
                }
                let byte = bytes[index]
                index += 1
                headerSeen += 1
                switch headerSeen {
                case 1:
                    continue
                case 2:
                    lengthCode = byte & 0x7F
                    extendedBytes = lengthCode == 126 ? 2 : lengthCode == 127 ? 8 : 0
                    headerLength = 2 + extendedBytes + (byte & 0x80 != 0 ? 4 : 0)
                    extendedLength = 0
                default:
                    // Extended length bytes (big-endian), then the masking key (not needed here).
                    if headerSeen <= 2 + extendedBytes { extendedLength = extendedLength << 8 | UInt64(byte) }
                }
                if headerSeen == headerLength {
                    headerSeen = 0
                    let length = lengthCode >= 126 ? extendedLength : UInt64(lengthCode)
                    payloadRemaining = length
                    if length == 0 { boundary(index) }
                }
            }
        }
    }
}
