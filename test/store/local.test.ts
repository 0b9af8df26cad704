import { localStoreUnderTest } from './backends.ts';
import { storeConformance } from './conformance.ts';

storeConformance('LocalStore', localStoreUnderTest);
