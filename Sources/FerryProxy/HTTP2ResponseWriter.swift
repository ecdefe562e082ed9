import NIOCore
import NIOHPACK
import NIOHTTP1

/// What both kinds of HTTP/2 stream share when they answer an `Exchange`: the response's HEADERS
/// and DATA, whatever carries the frames (`HTTP2RequestStream` writes them on the connection,
/// `HTTP2StreamFrontEnd` on its stream channel). The `ExchangeFrontEnd` methods that only shape a
/// response live here once.
protocol HTTP2ResponseWriter: AnyObject {
    /// The response has no body whatever the backend sends (HEAD, 204, 304).
    var responseBodyless: Bool { get set }
    /// The stream is an extended CONNECT (RFC 8441): a 2xx would tell the client its WebSocket is open.
    var isExtendedConnect: Bool { get }
    func writeHeaders(_ headers: HPACKHeaders, endStream: Bool)
    func writeData(_ buffer: ByteBuffer, endStream: Bool)
    func flushResponse()
}

enum HTTP2Response {
    static let localHeaders: HTTPHeaders = ["server": "ferry", "content-type": "text/plain; charset=utf-8"]

    static func isBodyless(_ status: Int) -> Bool { status == 204 || status == 304 }
}

extension HTTP2ResponseWriter {
    func sendContinue() {
        writeHeaders([":status": "100"], endStream: false)
        flushResponse()
    }

    func sendLocalResponse(status: HTTPResponseStatus, headers: HTTPHeaders, body: String, close: Bool) {
        var all = HTTP2Response.localHeaders
        all.add(contentsOf: headers)
        sendComplete(status: status, headers: all, body: ByteBuffer(string: body))
    }

    func sendBufferedResponse(_ head: HTTPResponseHead, body: ByteBuffer) {
        if isExtendedConnect && (200..<300).contains(head.status.code) {
            // The backend answered the WebSocket handshake with a success that is not 101: over
            // HTTP/2 a 2xx would tell the client its WebSocket is open (RFC 8441 §5). It is not.
            sendComplete(
                status: .badGateway, headers: HTTP2Response.localHeaders,
                body: ByteBuffer(string: "ferry: the backend did not accept the WebSocket (\(head.status.code))\n"))
            return
        }
        sendComplete(status: head.status, headers: head.headers, body: body)
    }

    /// A whole response: HEADERS, then DATA unless there is no body.
    func sendComplete(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer) {
        let bodyless = responseBodyless || HTTP2Response.isBodyless(Int(status.code))
        writeHeaders(
            HTTP2Messages.responseHeaders(status: status, headers: headers, bodyLength: body.readableBytes),
            endStream: bodyless || body.readableBytes == 0)
        if !bodyless && body.readableBytes > 0 { writeData(body, endStream: true) }
    }

    func sendResponseHead(_ head: UpstreamResponseHead, extraHeader: (name: String, value: String)?) -> Bool {
        let bodyless = responseBodyless || HTTP2Response.isBodyless(head.status)
        responseBodyless = bodyless
        writeHeaders(
            HTTP2Messages.responseHeaders(head, extraHeader: extraHeader, dropContentLength: false),
            endStream: bodyless)
        return false
    }

    func sendResponseBody(_ body: ByteBuffer) {
        guard !responseBodyless else { return }
        writeData(body, endStream: false)
    }

    var tunnelStatus: Int { 200 }
}

extension HTTP2ResponseWriter where Self: ExchangeFrontEnd {
    /// The exchange of a stream's request HEADERS, counted; nil when Ferry refused the block
    /// (`HTTP2Messages.request`) and answered it whole.
    func makeExchange(_ block: HPACKHeaders, endStream: Bool, connection: HTTP2Connection) -> Exchange? {
        let loop = connection.loop
        loop.requests += 1
        connection.requestStarted()
        switch HTTP2Messages.request(block, endStream: endStream) {
        case .failure(let refusal):
            sendComplete(
                status: refusal.status, headers: HTTP2Response.localHeaders,
                body: ByteBuffer(string: "ferry: \(refusal.reason)\n"))
            return nil
        case .success(let request):
            responseBodyless = request.method == .HEAD
            return Exchange(
                request: request, keepAlive: !loop.draining, client: connection.clientInfo, loop: loop,
                frontEnd: self)
        }
    }
}
