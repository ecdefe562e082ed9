import NIOCore
import NIOHTTP1

/// A request as the `Exchange` sees it, whatever protocol the client speaks: method, target,
/// version, the facts read once from its headers, and the headers themselves, either as the
/// client's HTTP/1 bytes (read in place, no `String` per header) or as `HTTPHeaders` (a head Ferry
/// changed, or one an HTTP/2 front end built from its HPACK block).
///
/// The hot path reads only `method`, `uri`, `facts` and, with sites or several certificates, the
/// Host; the rest (sticky and hash keys, the access log's user agent, the upgrade's key) is looked
/// up on demand, and `HTTPHeaders` is built only for the head-based paths (the tunnel's upstream
/// head, an absolute-form target).
struct ExchangeRequest {
    enum Fields {
        case raw(RawRequestHead)
        case headers(HTTPHeaders)
    }

    var method: HTTPMethod
    var uri: String
    var version: HTTPVersion
    var fields: Fields
    /// One pass over the request's headers, read by every later decision.
    let facts: RequestRules.RequestHeadFacts
    /// HTTP/2's extended CONNECT (RFC 8441): the `:protocol` asked for (`websocket`).
    var extendedConnectProtocol: String?

    init(
        method: HTTPMethod, uri: String, version: HTTPVersion, fields: Fields,
        facts: RequestRules.RequestHeadFacts
    ) {
        self.method = method
        self.uri = uri
        self.version = version
        self.fields = fields
        self.facts = facts
    }

    /// A request from NIO's head type (tests, and front ends that have one).
    init(_ head: HTTPRequestHead) {
        self.init(
            method: head.method, uri: head.uri, version: head.version, fields: .headers(head.headers),
            facts: RequestRules.RequestHeadFacts(head))
    }

    /// The client's bytes, when the head is exactly what the client sent: the upstream request is
    /// written from them (`RequestRules.writeUpstreamRequest(raw:)`).
    var raw: RawRequestHead? {
        if case .raw(let raw) = fields { raw } else { nil }
    }

    /// The first value of the header `name` (case-insensitive).
    func first(name: String) -> String? {
        switch fields {
        case .headers(let headers): headers.first(name: name)
        case .raw(let raw): Self.values(named: name, in: raw, first: true).first
        }
    }

    /// Every value of the header `name`, in order.
    func values(name: String) -> [String] {
        switch fields {
        case .headers(let headers): headers[name]
        case .raw(let raw): Self.values(named: name, in: raw, first: false)
        }
    }

    private static func values(named name: String, in raw: RawRequestHead, first: Bool) -> [String] {
        var lowercased = name.lowercased()
        return lowercased.withUTF8 { name in
            raw.bytes.withUnsafeReadableBytes { bytes in
                var values: [String] = []
                for field in raw.head.fields
                where HTTP1Head.name(of: field, equals: UnsafeRawBufferPointer(name), in: bytes) {
                    values.append(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.value]), as: UTF8.self))
                    if first { break }
                }
                return values
            }
        }
    }

    /// The headers as NIO's type (built from the bytes when the request has only those).
    var headers: HTTPHeaders {
        switch fields {
        case .headers(let headers):
            return headers
        case .raw(let raw):
            return raw.bytes.withUnsafeReadableBytes { bytes in
                func string(_ range: Range<Int>) -> String {
                    String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
                }
                var fields: [(String, String)] = []
                fields.reserveCapacity(raw.head.fields.count)
                for field in raw.head.fields { fields.append((string(field.name), string(field.value))) }
                return HTTPHeaders(fields)
            }
        }
    }

    /// The request as NIO's head type (the tunnel's upstream head and the head-based writer).
    var head: HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: uri, headers: headers)
    }

    /// Whether the client may send another request after this one (RFC 9112 §9.3), as NIO's
    /// `HTTPRequestHead.isKeepAlive` decides: `close` listed, or `keep-alive` more than once → no;
    /// `keep-alive` listed → yes; otherwise HTTP/1.1 and later keep the connection.
    var isKeepAlive: Bool {
        if facts.listing.listsClose || facts.listing.keepAliveElements > 1 { return false }
        if facts.listing.keepAliveElements == 1 { return true }
        return version.major == 1 && version.minor >= 1
    }

    /// Rewrites an absolute-form target (RFC 9112 §3.2.2) into origin form, with its authority as
    /// Host; the head is no longer the client's bytes.
    mutating func useOriginForm(_ absolute: RequestRules.AbsoluteTarget) {
        var headers = self.headers
        headers.replaceOrAdd(name: "Host", value: absolute.authority)
        fields = .headers(headers)
        uri = absolute.originForm
    }
}
