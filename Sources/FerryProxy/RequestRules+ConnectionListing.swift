import NIOCore
import NIOHTTP1

/// What a head's `Connection` fields list, and the facts of a backend's response head read in
/// one pass (split from RequestRules.swift, unchanged).
extension RequestRules {
    /// What a head's `Connection` headers list, computed once per head without allocating, so that
    /// the common `keep-alive`/`close`/`upgrade` needs no per-header scan.
    struct ConnectionListing: Equatable {
        /// `close` is listed (a header named `close` would be hop-by-hop).
        var listsClose = false
        /// Names other than the standard hop-by-hop ones and `close` are listed.
        var listsOthers = false
        /// `upgrade` is listed (a WebSocket handshake asks for it).
        var listsUpgrade = false
        /// How often `keep-alive` is listed (an HTTP/1.0 client asking to keep the connection;
        /// listed twice, the list is taken as conflicting, as NIO does, and the connection closes).
        var keepAliveElements = 0

        init() {}

        init(_ headers: HTTPHeaders) {
            for (name, value) in headers where nameEquals(name, "connection") { add(value) }
        }

        /// Takes in one element of a `Connection` field, as bytes of a head.
        mutating func add(element raw: UnsafeRawBufferPointer, _ range: Range<Int>) {
            if HeadBytes.equals(raw, range, "close") {
                listsClose = true
            } else if HeadBytes.equals(raw, range, "upgrade") {
                listsUpgrade = true
            } else if HeadBytes.equals(raw, range, "keep-alive") {
                keepAliveElements += 1
            } else if !HeadBytes.hopByHop.contains(where: { HeadBytes.equals(raw, range, $0) }) {
                listsOthers = true
            }
        }

        /// Takes in the elements of one `Connection` header.
        mutating func add(_ value: String) {
            forEachElement(value) { element in
                if nameEquals(element, "close") {
                    listsClose = true
                } else if nameEquals(element, "upgrade") {
                    listsUpgrade = true
                } else if nameEquals(element, "keep-alive") {
                    keepAliveElements += 1
                } else if !hopByHop.contains(where: { nameEquals(element, $0) }) {
                    listsOthers = true
                }
                return true
            }
        }
    }

    /// What a backend's response head says about its framing and its hop, from one pass over its
    /// headers (each pass over `HTTPHeaders` costs a retain and a release per stored string).
    struct ResponseHeadFacts {
        var hasContentLength = false
        /// The last Transfer-Encoding element is `chunked`.
        var chunked = false
        var listing = ConnectionListing()

        init(_ headers: HTTPHeaders) {
            for (name, value) in headers {
                if nameEquals(name, "content-length") {
                    hasContentLength = true
                } else if nameEquals(name, "transfer-encoding") {
                    forEachElement(value) { element in
                        chunked = nameEquals(element, "chunked")
                        return true
                    }
                } else if nameEquals(name, "connection") {
                    listing.add(value)
                }
            }
        }
    }
}
