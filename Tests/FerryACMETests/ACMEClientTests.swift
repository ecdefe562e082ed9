import Crypto
import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import FerryACME

/// RFC 8555's request rules against a scripted CA: nonces, jwk then kid, badNonce, problems.
@Suite struct ACMEClientTests {
    @Test func theAccountIsRegisteredWithTheKeyThenNamedByItsURL() async throws {
        let nonces = NIOLockedValueBox(0)
        let transport = ScriptedTransport { request in
            let next =
                request.method == "GET"
                ? ""
                : nonces.withLockedValue {
                    $0 += 1; return "nonce-\($0)"
                }
            switch (request.method, request.url) {
            case ("GET", "https://ca.test/dir"): return ScriptedTransport.directory
            case ("HEAD", "https://ca.test/nonce"): return ScriptedTransport.json(200, "", nonce: next)
            case ("POST", "https://ca.test/account"):
                return ScriptedTransport.json(
                    201, #"{"status":"valid"}"#, nonce: next, location: "https://ca.test/acct/9")
            case ("POST", "https://ca.test/order"):
                return ScriptedTransport.json(
                    201,
                    #"{"status":"pending","identifiers":[{"type":"dns","value":"a.test"}],"authorizations":["https://ca.test/authz/1"],"finalize":"https://ca.test/fin/1"}"#,
                    nonce: next, location: "https://ca.test/order/1")
            default: return ScriptedTransport.json(404, "{}")
            }
        }
        let client = ACMEClient(
            directoryURL: "https://ca.test/dir", transport: transport, key: ACMEAccountKey(P256.Signing.PrivateKey()))
        #expect(
            try await client.registerAccount(contact: ["mailto:ops@a.test"], termsAgreed: true)
                == "https://ca.test/acct/9")
        let (url, order) = try await client.newOrder(names: ["a.test"])
        #expect(url == "https://ca.test/order/1" && order.authorizations == ["https://ca.test/authz/1"])
        let posts = transport.received.filter { $0.method == "POST" }
        #expect(posts.count == 2)
        // newAccount: the key itself, the nonce from newNonce; newOrder: kid and the nonce the
        // previous answer carried (no second HEAD).
        #expect(posts[0].protected["jwk"] != nil && posts[0].protected["kid"] == nil)
        #expect(posts[0].protected["nonce"] as? String == "nonce-1")
        #expect(posts[1].protected["kid"] as? String == "https://ca.test/acct/9" && posts[1].protected["jwk"] == nil)
        #expect(posts[1].protected["nonce"] as? String == "nonce-2")
        #expect(posts[1].protected["url"] as? String == "https://ca.test/order")
        #expect(transport.received.filter { $0.method == "HEAD" }.count == 1)
    }

    @Test func aBadNonceIsRetriedWithTheFreshOneAndOtherProblemsAreReported() async throws {
        let attempts = NIOLockedValueBox(0)
        let transport = ScriptedTransport { request in
            switch (request.method, request.url) {
            case ("GET", _): return ScriptedTransport.directory
            case ("HEAD", _): return ScriptedTransport.json(200, "", nonce: "stale")
            case ("POST", "https://ca.test/order"):
                if attempts.withLockedValue({
                    $0 += 1; return $0
                }) == 1 {
                    return ScriptedTransport.json(
                        400,
                        #"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce"}"#,
                        nonce: "fresh")
                }
                return ScriptedTransport.json(
                    403,
                    #"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"policy forbids this name"}"#,
                    nonce: "later")
            default: return ScriptedTransport.json(404, "{}")
            }
        }
        let client = ACMEClient(
            directoryURL: "https://ca.test/dir", transport: transport, key: ACMEAccountKey(P256.Signing.PrivateKey()),
            accountURL: "https://ca.test/acct/1")
        await #expect {
            _ = try await client.newOrder(names: ["forbidden.test"])
        } throws: { error in
            "\(error)" == "ACME server answered 403: rejectedIdentifier: policy forbids this name"
        }
        let posts = transport.received.filter { $0.method == "POST" }
        #expect(posts.map { $0.protected["nonce"] as? String } == ["stale", "fresh"])
    }
}
