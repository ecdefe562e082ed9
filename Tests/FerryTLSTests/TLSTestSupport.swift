import FerryTLS
import Foundation
import NIOCore
import NIOEmbedded

/// A temporary directory with self-signed pairs, removed at deinit.
final class CertificateFixture: @unchecked Sendable {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// A fresh self-signed pair named `name`.crt / `name`.key.
    func pair(_ name: String) throws -> TLSServerConfiguration.Certificate {
        let certificate = path("\(name).crt")
        let key = path("\(name).key")
        try SelfSignedCertificate.ensure(certificatePath: certificate, keyPath: key)
        return .init(certificatePath: certificate, keyPath: key)
    }

    func serverContext(minimumVersion: TLSProtocolVersion = .tls12) throws -> TLSContext {
        try TLSContext.server(.init(certificates: [pair("server")], minimumVersion: minimumVersion))
    }
}

/// Records what reaches the end of a pipeline.
final class Collector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var received = ByteBuffer()
    var events: [Any] = []
    var errors: [any Error] = []
    var inactive = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        received.writeBuffer(&buffer)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        events.append(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        errors.append(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        inactive = true
    }

    var handshake: TLSHandshakeCompleted? { events.compactMap { $0 as? TLSHandshakeCompleted }.first }
    var text: String { String(buffer: received) }
}

/// A server and a client TLS handler in two EmbeddedChannels, bytes shuttled between them.
final class BackToBack {
    let server: EmbeddedChannel
    let client: EmbeddedChannel
    let serverCollector = Collector()
    let clientCollector = Collector()
    let counters = TLSCounters()

    init(serverContext: TLSContext, clientConfiguration: TLSClientConfiguration = .init(verification: .none)) throws {
        let loop = EmbeddedEventLoop()
        server = EmbeddedChannel(loop: loop)
        client = EmbeddedChannel(loop: loop)
        try server.pipeline.syncOperations.addHandlers([
            TLSHandler(context: serverContext, counters: counters), serverCollector,
        ])
        try client.pipeline.syncOperations.addHandlers([
            TLSHandler(context: TLSContext.client(clientConfiguration)), clientCollector,
        ])
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
    }

    /// Moves bytes both ways until neither side has anything to send.
    @discardableResult
    func shuttle() throws -> Int {
        var moved = 0
        while true {
            var progress = false
            while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                moved += bytes.readableBytes
                progress = true
                if server.isActive { try server.writeInbound(bytes) }
            }
            while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                moved += bytes.readableBytes
                progress = true
                if client.isActive { try client.writeInbound(bytes) }
            }
            if !progress { return moved }
        }
    }

    /// Writes without waiting: before the handshake completes the write is (correctly) pending.
    func send(_ text: String, from channel: EmbeddedChannel) -> EventLoopFuture<Void> {
        channel.writeAndFlush(ByteBuffer(string: text))
    }
}
