// 20,000-message campaigns on postgres while the emulator injects 10% -1, 5% 45011 and 2% dropped connections.
import { defineCampaignSuite } from './support/campaign-suite.js';

await defineCampaignSuite('postgres');
