import NIOCore
import NIOEmbedded
import Testing

@testable import FerryTLS

/// Memory BIOs never shrink on their own; `trimBuffers` must give back what a burst grew, so that
/// an idle connection after a large response does not keep it (86 KiB per connection before).
@Suite struct TLSConnectionBufferTests {
    /// A handshake between two `TLSConnection`s, bytes moved by hand.
    func connectedPair(_ fixture: CertificateFixture) throws -> (server: TLSConnection, client: TLSConnection) {
        let server = try TLSConnection(context: try fixture.serverContext())
        let client = try TLSConnection(context: try TLSContext.client(.init(verification: .none)))
        for _ in 0..<10 {
            _ = client.handshake()
            if let bytes = client.takeOutput(allocator: ByteBufferAllocator()) { server.receive(bytes) }
            let done = server.handshake() == .complete
            if let bytes = server.takeOutput(allocator: ByteBufferAllocator()) { client.receive(bytes) }
            if done && client.handshake() == .complete { break }
        }
        return (server, client)
    }

    @Test func buffersGrownByALargeWriteAreGivenBackOnceDrained() throws {
        let fixture = try CertificateFixture()
        let (server, client) = try connectedPair(fixture)
        #expect(server.write(ByteBuffer(repeating: 0x61, count: 64 * 1024)) == .complete)
        let output = try #require(server.takeOutput(allocator: ByteBufferAllocator()))
        #expect(output.readableBytes > 64 * 1024)
        #expect(server.retainedBufferBytes > 64 * 1024, "the write BIO grew to hold the burst")
        server.trimBuffers()
        #expect(server.retainedBufferBytes <= 2 * TLSConnection.retainedBufferLimit)

        // The client's read BIO: grown by the burst, given back once everything is read.
        client.receive(output)
        var plaintext = 0
        while true {
            var buffer = ByteBufferAllocator().buffer(capacity: 16384)
            guard client.read(into: &buffer) == .data else { break }
            plaintext += buffer.readableBytes
        }
        #expect(plaintext == 64 * 1024)
        #expect(client.retainedBufferBytes > 64 * 1024)
        client.trimBuffers()
        #expect(client.retainedBufferBytes <= 2 * TLSConnection.retainedBufferLimit)

        // Still a working connection after the swap.
        #expect(server.write(ByteBuffer(string: "after")) == .complete)
        client.receive(try #require(server.takeOutput(allocator: ByteBufferAllocator())))
        var after = ByteBufferAllocator().buffer(capacity: 64)
        #expect(client.read(into: &after) == .data)
        #expect(String(buffer: after) == "after")
    }

    /// Through the handler: a busy connection keeps its grown buffers from one large response to the
    /// next (freeing and regrowing 64 KiB+ per response cost 64 KiB downloads ~9 % of their rate);
    /// once it has been idle for `TLSHandler.trimDelay` they are given back.
    @Test func theHandlerKeepsBuffersWhileBusyAndGivesThemBackWhenIdle() throws {
        let fixture = try CertificateFixture()
        let pair = try BackToBack(serverContext: fixture.serverContext())
        try pair.shuttle()
        let handler = try pair.server.pipeline.syncOperations.handler(type: TLSHandler.self)
        for _ in 0..<3 {
            pair.server.writeAndFlush(ByteBuffer(repeating: 0x61, count: 64 * 1024), promise: nil)
            try pair.shuttle()
            #expect(handler.retainedBufferBytes > 64 * 1024, "kept between two large responses")
        }
        #expect(pair.clientCollector.received.readableBytes == 3 * 64 * 1024)
        // The first check finds the traffic above and looks again; the second finds none.
        pair.server.embeddedEventLoop.advanceTime(by: TLSHandler.trimDelay)
        #expect(handler.retainedBufferBytes > 64 * 1024, "busy within the last trimDelay")
        _ = pair.counters.takeReleasedBytes()  // the handshake's buffers, trimmed on the way
        pair.server.embeddedEventLoop.advanceTime(by: TLSHandler.trimDelay)
        #expect(handler.retainedBufferBytes <= 2 * TLSConnection.retainedBufferLimit)
        // What was given back is counted for the worker's heap trimmer.
        #expect(pair.counters.takeReleasedBytes() > 64 * 1024)
        // And the connection still works.
        pair.server.writeAndFlush(ByteBuffer(string: "after"), promise: nil)
        try pair.shuttle()
        #expect(pair.clientCollector.received.readableBytes == 3 * 64 * 1024 + 5)
        // A closed connection counts as released too.
        try pair.server.close().wait()
        #expect(pair.counters.takeReleasedBytes() >= TLSCounters.closedConnectionFootprint)
    }
}
