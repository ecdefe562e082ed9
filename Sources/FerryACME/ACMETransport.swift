import AsyncHTTPClient
public import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// One HTTP answer from the ACME server.
public struct ACMEHTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: Data

    public init(status: Int, headers: [(String, String)], body: Data) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}

/// How the client reaches the ACME server; tests may substitute their own.
public protocol ACMETransport: Sendable {
    func get(_ url: String) async throws -> ACMEHTTPResponse
    func head(_ url: String) async throws -> ACMEHTTPResponse
    func post(_ url: String, jose body: Data) async throws -> ACMEHTTPResponse
    func shutdown() async
}

public struct ACMETransportError: Error, CustomStringConvertible {
    public var description: String
}

/// AsyncHTTPClient over HTTPS (the server's certificate verified against the system's roots, or
/// against `trustRoots`, a PEM file, for a test CA such as Pebble).
public final class ACMEHTTPTransport: ACMETransport {
    private let client: HTTPClient
    private static let bodyLimit = 1 << 20
    private let timeout: TimeAmount = .seconds(30)

    public init(trustRoots: String?) {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let trustRoots { tls.trustRoots = .file(trustRoots) }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        configuration.redirectConfiguration = .disallow
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func get(_ url: String) async throws -> ACMEHTTPResponse {
        try await execute(url, method: .GET, body: nil)
    }

    public func head(_ url: String) async throws -> ACMEHTTPResponse {
        try await execute(url, method: .HEAD, body: nil)
    }

    public func post(_ url: String, jose body: Data) async throws -> ACMEHTTPResponse {
        try await execute(url, method: .POST, body: body)
    }

    public func shutdown() async {
        try? await client.shutdown()
    }

    private func execute(_ url: String, method: HTTPMethod, body: Data?) async throws -> ACMEHTTPResponse {
        guard url.hasPrefix("https://") || url.hasPrefix("http://") else {
            throw ACMETransportError(description: "not an HTTP URL: \(url)")
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "User-Agent", value: "Ferry-ACME/1")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/jose+json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response = try await client.execute(request, timeout: timeout)
        let collected = try await response.body.collect(upTo: Self.bodyLimit)
        return ACMEHTTPResponse(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: Data(collected.readableBytesView))
    }
}
