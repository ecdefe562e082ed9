import NIOCore
import NIOEmbedded
import Testing

@testable import FerryProxy

@Suite struct WebSocketFrameTrackerTests {
    func frame(payload: Int, masked: Bool, opcode: UInt8 = 0x2) -> [UInt8] {
        var bytes: [UInt8] = [0x80 | opcode]
        let mask: UInt8 = masked ? 0x80 : 0
        if payload < 126 {
            bytes.append(mask | UInt8(payload))
        } else if payload <= 0xFFFF {
            bytes += [mask | 126, UInt8(payload >> 8), UInt8(payload & 0xFF)]
        } else {
            bytes.append(mask | 127)
            bytes += (0..<8).reversed().map { UInt8((payload >> ($0 * 8)) & 0xFF) }
        }
        if masked { bytes += [1, 2, 3, 4] }
        return bytes + [UInt8](repeating: 0x61, count: payload)
    }

    @Test func boundariesOfWholeFramesInOneBuffer() {
        var tracker = WebSocketFrameTracker()
        let bytes =
            frame(payload: 5, masked: true) + frame(payload: 0, masked: false, opcode: 0x9)
            + frame(payload: 300, masked: false)
        let boundaries = tracker.consume(ByteBuffer(bytes: bytes))
        #expect(boundaries == [11, 13, 13 + 4 + 300])
        #expect(tracker.atBoundary)
    }

    @Test func framesSplitAcrossReadsAnywhere() {
        let bytes = frame(payload: 70_000, masked: true) + frame(payload: 3, masked: true)
        for split in [1, 2, 5, 9, 14, 70_013, 70_014, 70_015] {
            var tracker = WebSocketFrameTracker()
            let first = tracker.consume(ByteBuffer(bytes: bytes[..<split]))
            let inFirst = split >= 70_014
            #expect(first.isEmpty != inFirst, "split \(split)")
            let second = tracker.consume(ByteBuffer(bytes: bytes[split...]))
            #expect((first + second.map { $0 + split }) == [70_014, 70_014 + 9], "split \(split)")
            #expect(tracker.atBoundary)
        }
    }

    @Test func midFrameIsNotABoundary() {
        var tracker = WebSocketFrameTracker()
        _ = tracker.consume(ByteBuffer(bytes: frame(payload: 10, masked: false).prefix(6)))
        #expect(!tracker.atBoundary)
    }
}

@Suite struct GlueInjectionTests {
    /// Drain's close frame waits for the frame in flight: the client receives the whole frame, then
    /// the close, and nothing of the next frame.
    @Test func closeFrameIsInjectedBetweenFramesNeverInside() throws {
        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        let loop = EmbeddedEventLoop()
        let client = EmbeddedChannel(handler: clientGlue, loop: loop)
        let upstream = EmbeddedChannel(handler: upstreamGlue, loop: loop)
        let first: [UInt8] = [0x82, 0x04, 1, 2, 3, 4]
        let second: [UInt8] = [0x82, 0x02, 9, 9]
        try upstream.writeInbound(ByteBuffer(bytes: first.prefix(3)))
        upstreamGlue.injectAtBoundary(ByteBuffer(bytes: TunnelCloser.toClient))
        var delivered: [UInt8] = []
        while let out = try client.readOutbound(as: ByteBuffer.self) { delivered += out.readableBytesView }
        #expect(delivered == Array(first.prefix(3)), "nothing injected inside the frame")
        try upstream.writeInbound(ByteBuffer(bytes: Array(first.dropFirst(3)) + second))
        while let out = try client.readOutbound(as: ByteBuffer.self) { delivered += out.readableBytesView }
        #expect(delivered == first + TunnelCloser.toClient)
        _ = try? client.finish()
        _ = try? upstream.finish()
    }

    @Test func atABoundaryTheCloseGoesOutAtOnce() throws {
        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        let loop = EmbeddedEventLoop()
        let client = EmbeddedChannel(handler: clientGlue, loop: loop)
        let upstream = EmbeddedChannel(handler: upstreamGlue, loop: loop)
        clientGlue.injectAtBoundary(ByteBuffer(bytes: TunnelCloser.toBackend))
        let out = try upstream.readOutbound(as: ByteBuffer.self)
        #expect(out.map { Array($0.readableBytesView) } == TunnelCloser.toBackend)
        _ = try? client.finish()
        _ = try? upstream.finish()
    }

    /// After drain's close frame went to the client, the backend closing (its close reply) only
    /// half-closes the client: a full close with the client's reply unread makes the kernel send
    /// a reset, which can discard the close frame before the client reads it.
    @Test func afterTheCloseFrameTheBackendsCloseOnlyHalfClosesTheClient() throws {
        let (clientGlue, upstreamGlue) = GlueHandler.matchedPair()
        let loop = EmbeddedEventLoop()
        let recorder = CloseModeRecorder()
        let client = EmbeddedChannel(loop: loop)
        try client.pipeline.syncOperations.addHandlers([recorder, clientGlue])
        let upstream = EmbeddedChannel(handler: upstreamGlue, loop: loop)
        upstreamGlue.injectAtBoundary(ByteBuffer(bytes: TunnelCloser.toClient))
        #expect(try client.readOutbound(as: ByteBuffer.self).map { Array($0.readableBytesView) } == TunnelCloser.toClient)
        _ = try? upstream.finish()
        #expect(recorder.modes == [.output])
        _ = try? client.finish()
    }
}

/// Records the modes of the closes that pass through it.
final class CloseModeRecorder: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var modes: [CloseMode] = []

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        modes.append(mode)
        context.close(mode: mode, promise: promise)
    }
}
