import NIOCore
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
}
