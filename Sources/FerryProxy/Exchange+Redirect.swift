import FerryConfig
import NIOCore
import NIOHTTP1

/// A plain-HTTP listener with `redirect_to_https`: every request gets 308 to the same host and
/// target over HTTPS, and nothing reaches a backend. `/.well-known/acme-challenge/` is kept for
/// the ACME client's HTTP-01 tokens (issue 17): until it serves them, such paths are 404, not
/// redirected (a CA's validator does not follow a redirect to a certificate it is issuing).
extension Exchange {
    func redirectToHTTPS(port: Int) {
        let uri = request.uri
        if uri.hasPrefix("/.well-known/acme-challenge/") {
            respondLocally(status: .notFound, body: "ferry: no such challenge token\n", close: false)
            return
        }
        guard uri.hasPrefix("/"), let raw = request.first(name: "Host"), let host = HostName.normalize(raw),
            !host.hasPrefix("*"), HostName.isValidPattern(host)
        else {
            respondLocally(status: .badRequest, body: "ferry: a request without a valid Host\n", close: false)
            return
        }
        let location = "https://\(host)\(port == 443 ? "" : ":\(port)")\(uri)"
        var headers = HTTPHeaders()
        headers.add(name: "Location", value: location)
        respondLocally(
            status: .permanentRedirect, body: "ferry: this site is served over HTTPS: \(location)\n", close: false,
            extraHeaders: headers)
    }
}
