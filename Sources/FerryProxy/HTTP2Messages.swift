import FerryConfig
import NIOCore
import NIOHPACK
import NIOHTTP1

/// Conversions between HTTP/2 header blocks and what the `Exchange` and the HTTP/1.1 backends
/// speak. swift-nio-http2 has already checked the block (RFC 9113 §8.2–8.3: lowercase token names,
/// no CR/LF/NUL in values, no connection-specific fields, `TE` only `trailers`, pseudo-headers
/// once, first, and the mandatory ones present); what is left here is the meaning.
enum HTTP2Messages {
    /// A request the front end refuses before it becomes an exchange: `reset` is a stream error
    /// (RFC 9113 §8.1.1 malformed), otherwise an HTTP answer with `status`.
    struct Refusal: Error, Equatable {
        var status: HTTPResponseStatus
        var reason: String
    }

    /// The request of a HEADERS block. `endStream`: the block ended the stream (no body).
    ///
    /// `:authority` becomes `Host` (RFC 9113 §8.3.1: an intermediary to HTTP/1.1 creates it when
    /// absent); a `Host` that names another entity than `:authority` is refused. Cookie fields,
    /// which HTTP/2 may split, are joined with "; " (§8.2.3). A body without Content-Length goes
    /// to the backend chunked.
    static func request(_ block: HPACKHeaders, endStream: Bool) -> Result<ExchangeRequest, Refusal> {
        var method: String?
        var path: String?
        var authority: String?
        var extendedProtocol: String?
        var headers = HTTPHeaders()
        var cookies: [String] = []
        var host: String?
        for (name, value, _) in block {
            if name.utf8.first == UInt8(ascii: ":") {
                switch name {
                case ":method": method = value
                case ":path": path = value
                case ":authority": authority = value
                case ":protocol": extendedProtocol = value
                default: break  // :scheme; anything else was refused by the validation
                }
            } else if name == "cookie" {
                cookies.append(value)
            } else {
                if name == "host" {
                    if host != nil { return .failure(Refusal(status: .badRequest, reason: "several Host headers")) }
                    host = value
                }
                headers.add(name: name, value: value)
            }
        }
        guard let method else { return .failure(Refusal(status: .badRequest, reason: "no :method")) }
        if let authority {
            if let host, HostName.normalize(host) != HostName.normalize(authority) {
                return .failure(Refusal(status: .badRequest, reason: "Host differs from :authority"))
            }
            if host == nil { headers.add(name: "host", value: authority) }
        }
        if !cookies.isEmpty { headers.add(name: "cookie", value: cookies.joined(separator: "; ")) }
        let httpMethod = HTTPMethod(rawValue: method)
        let uri: String
        if let path {
            uri = path
        } else {
            // CONNECT (RFC 9113 §8.5) has no :path; it is refused by the exchange as in HTTP/1.
            uri = authority ?? ""
        }
        var head = HTTPRequestHead(version: HTTPVersion(major: 2, minor: 0), method: httpMethod, uri: uri)
        head.headers = headers
        var facts = RequestRules.RequestHeadFacts(head)
        if extendedProtocol != nil {
            // RFC 8441: a WebSocket is asked for by an extended CONNECT, which the exchange reads
            // through `ExchangeRequest.extendedConnect`, not through Upgrade.
            facts.upgradeListsWebSocket = false
        }
        if !endStream && facts.length == nil && extendedProtocol == nil {
            // The stream frames the body; the backend gets it chunked.
            facts.encodings = 1
            facts.lastEncodingIsChunked = true
        }
        var request = ExchangeRequest(
            method: httpMethod, uri: uri, version: head.version, fields: .headers(headers), facts: facts)
        request.extendedConnectProtocol = extendedProtocol
        return .success(request)
    }

    /// The response head for an HTTP/2 client: `:status`, then the backend's fields without the
    /// hop-by-hop ones, Transfer-Encoding (the stream frames the body) and, with `dropContentLength`,
    /// Content-Length; names lowercased (RFC 9113 §8.2.1).
    static func responseHeaders(
        _ head: UpstreamResponseHead, extraHeader: (name: String, value: String)?, dropContentLength: Bool
    ) -> HPACKHeaders {
        var out = HPACKHeaders()
        out.reserveCapacity(head.head.fields.count + 2)
        out.add(name: ":status", value: String(head.status))
        head.bytes.withUnsafeReadableBytes { raw in
            for field in head.head.fields where head.keeps(field, in: raw, dropContentLength: dropContentLength) {
                let value = String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.value]), as: UTF8.self)
                out.add(name: lowercasedName(UnsafeRawBufferPointer(rebasing: raw[field.name])), value: value)
            }
        }
        if let extraHeader { out.add(name: extraHeader.name.lowercased(), value: extraHeader.value) }
        return out
    }

    /// A field name from an HTTP/1 head, lowercased as HTTP/2 wants it, in one pass (the parser
    /// has checked it is a token: ASCII only).
    static func lowercasedName(_ bytes: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: bytes.count) { out in
            for index in 0..<bytes.count {
                let byte = bytes[index]
                out[index] = byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
            }
            return bytes.count
        }
    }

    /// A response Ferry makes (local answers), or a backend's buffered one, for an HTTP/2 client.
    static func responseHeaders(status: HTTPResponseStatus, headers: HTTPHeaders, bodyLength: Int?) -> HPACKHeaders {
        var out = HPACKHeaders()
        out.add(name: ":status", value: String(status.code))
        let listing = RequestRules.ConnectionListing(headers)
        for (name, value) in headers {
            if RequestRules.isHopByHop(name, in: headers, listing: listing)
                || RequestRules.nameEquals(name, "transfer-encoding")
                || RequestRules.nameEquals(name, "content-length")
            {
                continue
            }
            out.add(name: name.lowercased(), value: value)
        }
        if let bodyLength { out.add(name: "content-length", value: String(bodyLength)) }
        return out
    }
}
