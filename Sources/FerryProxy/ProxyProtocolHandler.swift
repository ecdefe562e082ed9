import FerryConfig
import NIOCore

/// The client's address from a PROXY protocol header, fired inbound before the connection's first
/// bytes; the HTTP handler takes it as the client's address.
public struct ProxyProtocolClient: Sendable, Equatable {
    public var address: String
    public var port: Int
}

/// First in a PROXY protocol listener's pipeline (before TLS): from a trusted source, reads the
/// header (closing the connection when it is missing, malformed or late), fires
/// `ProxyProtocolClient`, then passes what follows on and leaves the pipeline. From another
/// source, a connection whose first bytes look like a header is refused; any other goes through.
final class ProxyProtocolHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let trusted: [CIDRBlock]
    private let timeout: TimeAmount
    private let refused: (String) -> Void
    private var buffered: ByteBuffer?
    private var peerIsTrusted = false
    private var deadline: Scheduled<Void>?
    private var done = false

    /// - Parameter refused: told why a connection was closed (counted and logged by the caller).
    init(trusted: [CIDRBlock], timeout: TimeAmount, refused: @escaping (String) -> Void) {
        self.trusted = trusted
        self.timeout = timeout
        self.refused = refused
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let peer = context.channel.remoteAddress?.ipAddress.flatMap(IPAddressBytes.parse)
        peerIsTrusted = trusted.isEmpty || peer.map { address in trusted.contains { $0.contains(address) } } ?? false
        guard peerIsTrusted else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.refuse(context: context, "no PROXY protocol header within \(handler.timeout)")
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return context.fireChannelRead(data) }
        var incoming = unwrapInboundIn(data)
        if buffered == nil {
            buffered = incoming
        } else {
            buffered!.writeBuffer(&incoming)
        }
        let bytes = buffered!.readableBytesView
        guard peerIsTrusted else {
            if ProxyProtocolHeader.mayStartHeader(bytes) {
                // Not decided yet ("PRO…" could still be PROPFIND), or a header from a source that
                // may not send one.
                let prefix = Array(bytes.prefix(12))
                if bytes.count >= 12 || (prefix.first == UInt8(ascii: "P") && bytes.count >= 6) {
                    refuse(context: context, "a PROXY protocol header from a source outside proxy_protocol_from")
                }
                return
            }
            return pass(context: context, header: nil)
        }
        switch ProxyProtocolHeader.parse(bytes) {
        case .needMoreData:
            return
        case .invalid(let reason):
            refuse(context: context, reason)
        case .header(let header, let length):
            buffered!.moveReaderIndex(forwardBy: length)
            if case .proxied(let address, let port) = header {
                pass(context: context, header: ProxyProtocolClient(address: address, port: port))
            } else {
                pass(context: context, header: nil)
            }
        }
    }

    private func pass(context: ChannelHandlerContext, header: ProxyProtocolClient?) {
        done = true
        deadline?.cancel()
        if let header { context.fireUserInboundEventTriggered(header) }
        if let rest = buffered, rest.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(rest)) }
        buffered = nil
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private func refuse(context: ChannelHandlerContext, _ reason: String) {
        guard !done else { return }
        done = true
        deadline?.cancel()
        buffered = nil
        refused(reason)
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ProxyProtocolHandler: Sendable {}
