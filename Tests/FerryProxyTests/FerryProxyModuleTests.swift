import Testing

@testable import FerryProxy

@Suite struct FerryProxyModuleTests {
    @Test func moduleLinks() {
        #expect(!String(describing: FerryProxyModule.self).isEmpty)
    }
}
