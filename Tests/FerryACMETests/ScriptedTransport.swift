import Foundation
import NIOConcurrencyHelpers

@testable import FerryACME

/// A CA in a closure: each request is answered by `answer`, and every request is kept.
final class ScriptedTransport: ACMETransport {
    struct Request {
        var method: String
        var url: String
        var body: Data?

        /// The JWS's protected header, decoded.
        var protected: [String: Any] {
            guard let body, let jws = try? JSONSerialization.jsonObject(with: body) as? [String: String],
                let encoded = jws["protected"], let json = Base64URL.decode(encoded),
                let header = try? JSONSerialization.jsonObject(with: json) as? [String: Any]
            else { return [:] }
            return header
        }
    }

    private let requests = NIOLockedValueBox<[Request]>([])
    let answer: @Sendable (Request) throws -> ACMEHTTPResponse

    init(answer: @escaping @Sendable (Request) throws -> ACMEHTTPResponse) {
        self.answer = answer
    }

    var received: [Request] { requests.withLockedValue { $0 } }

    private func handle(_ request: Request) throws -> ACMEHTTPResponse {
        requests.withLockedValue { $0.append(request) }
        return try answer(request)
    }

    func get(_ url: String) async throws -> ACMEHTTPResponse { try handle(Request(method: "GET", url: url)) }
    func head(_ url: String) async throws -> ACMEHTTPResponse { try handle(Request(method: "HEAD", url: url)) }
    func post(_ url: String, jose body: Data) async throws -> ACMEHTTPResponse {
        try handle(Request(method: "POST", url: url, body: body))
    }
    func shutdown() async {}

    static let directory = ACMEHTTPResponse(
        status: 200, headers: [],
        body: Data(
            #"{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/account","newOrder":"https://ca.test/order"}"#
                .utf8))

    static func json(_ status: Int, _ text: String, nonce: String? = nil, location: String? = nil) -> ACMEHTTPResponse {
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        if let nonce { headers.append(("Replay-Nonce", nonce)) }
        if let location { headers.append(("Location", location)) }
        return ACMEHTTPResponse(status: status, headers: headers, body: Data(text.utf8))
    }
}
