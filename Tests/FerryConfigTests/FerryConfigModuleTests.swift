import Testing

@testable import FerryConfig

@Suite struct FerryConfigModuleTests {
    @Test func moduleLinks() {
        #expect(!String(describing: FerryConfigModule.self).isEmpty)
    }
}
