public import Foundation

/// The JSON objects of RFC 8555 §7.1 Ferry reads and writes; unknown members are ignored.
public struct ACMEDirectory: Decodable, Sendable, Equatable {
    public struct Meta: Decodable, Sendable, Equatable {
        public var termsOfService: String?
    }

    public var newNonce: String
    public var newAccount: String
    public var newOrder: String
    /// RFC 9773 (ARI): present when the server offers renewal information.
    public var renewalInfo: String?
    public var meta: Meta?
}

/// An error document (RFC 7807, RFC 8555 §6.7).
public struct ACMEProblem: Codable, Sendable, Equatable, CustomStringConvertible {
    public var type: String?
    public var detail: String?
    public var status: Int?
    public var subproblems: [ACMEProblem]?

    public var description: String {
        let kind = type.map { $0.replacing("urn:ietf:params:acme:error:", with: "") } ?? "error"
        let sub = (subproblems ?? []).map(\.description)
        return ([detail.map { "\(kind): \($0)" } ?? kind] + sub).joined(separator: "; ")
    }
}

public struct ACMEIdentifier: Codable, Sendable, Equatable {
    public var type: String
    public var value: String

    public static func dns(_ name: String) -> ACMEIdentifier { ACMEIdentifier(type: "dns", value: name) }
}

public struct ACMEOrder: Decodable, Sendable, Equatable {
    public var status: String
    public var identifiers: [ACMEIdentifier]
    public var authorizations: [String]
    public var finalize: String
    public var certificate: String?
    public var error: ACMEProblem?
}

public struct ACMEAuthorization: Decodable, Sendable, Equatable {
    public var status: String
    public var identifier: ACMEIdentifier
    public var challenges: [ACMEChallenge]
}

public struct ACMEChallenge: Decodable, Sendable, Equatable {
    public var type: String
    public var url: String
    public var status: String
    public var token: String?
    public var error: ACMEProblem?
}

/// RFC 9773 (ACME Renewal Information): the window the CA suggests renewing in.
public struct ACMERenewalInfo: Decodable, Sendable, Equatable {
    public struct Window: Decodable, Sendable, Equatable {
        public var start: Date
        public var end: Date
    }

    public var suggestedWindow: Window

    /// RFC 3339 times, with or without fractions of a second.
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            for options: ISO8601DateFormatter.Options in [
                [.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime],
            ] {
                let formatter = ISO8601DateFormatter()
                formatter.formatOptions = options
                if let date = formatter.date(from: text) { return date }
            }
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "not RFC 3339: \(text)"))
        }
        return decoder
    }()
}

/// The request payloads (§7.3, §7.4).
struct NewAccountRequest: Encodable {
    var contact: [String]
    var termsOfServiceAgreed: Bool
    var externalAccountBinding: ACMERawJSON?
}

/// A JSON object already serialized (a nested JWS), embedded as is.
struct ACMERawJSON: Encodable {
    let object: [String: String]

    init(_ text: String) throws {
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String] else {
            throw ACMEError.protocolViolation("not a flat JSON object")
        }
        self.object = object
    }

    func encode(to encoder: any Encoder) throws {
        try object.encode(to: encoder)
    }
}

struct NewOrderRequest: Encodable {
    var identifiers: [ACMEIdentifier]
    /// RFC 9773 §5: the ARI certificate id of the certificate this order renews.
    var replaces: String?
}

struct FinalizeRequest: Encodable {
    var csr: String
}
